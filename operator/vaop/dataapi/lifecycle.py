"""Start the data API on every replica and keep what it depends on current: the front proxy's CA
(re-read every few minutes, so a rotated request-header CA is trusted in time), the serving
certificate (shared with the webhook), the APIService's caBundle, and the held account keys (those
past their time are forgotten)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import ssl
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import config, kubeclient, pki, platformroot
from ..admission import registration, tls
from ..listers import Listers
from ..runtime import retry
from . import auth, cache, kinds, server, storage, verbs
from . import keys as account_keys

logger = logging.getLogger(__name__)
REFRESH_SECONDS = 300.0
ANNOUNCED = f"{kinds.GROUP}/served-since"
RETRY_SECONDS = 5.0
SYNC_SECONDS = 60.0  # the first listing of every SealedObject: 10,000 take about a second


def is_available(api_service: Any) -> bool:
    """Does the aggregator hold this APIService (a model of either Kubernetes client) Available?"""
    conditions = (api_service.status and api_service.status.conditions) or []
    return any(c.type == "Available" and c.status == "True" for c in conditions)


class DataApi:
    def __init__(
        self,
        options: config.OperatorConfig,
        api: client.ApiClient,
        identities: kubeclient.Identities,
        *,
        listers: Listers,
        root: platformroot.Root | None = None,
        renewed: asyncio.Event | None = None,
    ) -> None:
        self._options = options
        self._renewed = renewed  # set when cert-manager renews the certificate
        self._api = api
        self.keys = account_keys.AccountKeys(
            api,
            identities,
            namespace=options.namespace,
            listers=listers,
            hold_seconds=options.check_interval,
            root=root,
        )
        self.sealed = cache.SealedCache(api, namespace=options.namespace)
        self._reflecting: asyncio.Task[None] | None = None
        self._request_header: auth.RequestHeaderConfig | None = None
        self._server: server.DataServer | None = None
        self._context: ssl.SSLContext | None = None
        self._ca_pem = b""
        self._problem: str | None = "not started yet"
        self._task: asyncio.Task[None] | None = None
        self._announcing: asyncio.Task[None] | None = None

    def problem(self) -> str | None:
        return self._problem

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="data-api")

    async def stop(self) -> None:
        for task in (self._task, self._announcing, self._reflecting):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._server is not None:
            await self._server.stop()

    async def _run(self) -> None:
        await retry.until_done(
            self._start,
            doing="Starting the data API",
            first=RETRY_SECONDS,
            most=RETRY_SECONDS,  # served within seconds of the apiserver answering again
            problem=self._told,
        )
        await retry.every(
            REFRESH_SECONDS,
            self._refresh,
            doing="Refreshing the data API's certificates",
            retry_after=RETRY_SECONDS,
            problem=self._told,
            wake=self._renewed,
            at_once=False,  # the start has just done what a refresh does
        )

    def _told(self, problem: str | None) -> None:
        self._problem = problem

    async def _start(self) -> None:
        ca, serving = await self._certificates()
        self._request_header = await auth.request_header_config(self._api)
        await self._register(ca)  # trusted before it is served
        if self._reflecting is None:
            self._reflecting = asyncio.create_task(self.sealed.run(), name="data-api-cache")
        try:
            await asyncio.wait_for(self.sealed.synced.wait(), SYNC_SECONDS)
        except TimeoutError:
            raise RuntimeError(
                "the SealedObjects could not be listed yet (see the warnings above): "
                "the data API serves once they are"
            ) from None
        self._context = tls.server_context(serving)
        auth.trust_front_proxy(self._context, self._request_header)
        service = verbs.DataService(storage.Storage(self._api), self.keys, self.sealed)
        self._server = server.DataServer(
            service,
            auth.Authorizer(self._api, kinds.GROUP, kinds.VERSION),
            lambda: self._request_header,
            host=self._options.data_api_host,
            port=self._options.data_api_port,
            context=self._context,
            backup_identities=frozenset(self._options.backup_identities),
        )
        await self._server.start()
        self._problem = None
        self._announcing = asyncio.create_task(self._announce(), name="data-api-announce")

    async def _refresh(self) -> None:
        self.keys.purge()  # held keys past their time are forgotten
        ca, serving = await self._certificates()
        if ca.cert_pem != self._ca_pem:
            await self._register(ca)  # a new CA is trusted before it is served
        assert self._context is not None
        tls.load_serving(self._context, serving)
        config = await auth.request_header_config(self._api)
        if config != self._request_header:
            auth.trust_front_proxy(
                self._context, config
            )  # adds the new CA; the old one ages out with a restart
            self._request_header = config

    async def _announce(self) -> None:
        """Touch the APIService so that the apiserver acts at once on this server being up:
        - while it is not Available (a restart after an outage): the aggregator checks an APIService
          again when it changes, and otherwise only after its back-off from the failed checks (up to
          30 s) or at its 30 s resync, answering 503 for the whole group meanwhile;
        - once it is Available: the apiserver's OpenAPI aggregation backs off for minutes after
          failing while nothing served (it retries promptly only when the APIService changes), and
          kubectl explain needs this server's OpenAPI.
        """
        services = client.ApiregistrationV1Api(self._api)
        prompted = False
        for _ in range(120):
            try:
                found = await services.read_api_service(self._options.api_service)
                available = is_available(found)
                if available or not prompted:
                    # Microseconds: the second touch must change the value, or it changes nothing.
                    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                    patch = {"metadata": {"annotations": {ANNOUNCED: stamp}}}
                    await services.patch_api_service(self._options.api_service, patch)
                    if available:
                        return
                    prompted = True
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.debug("Data API: waiting for the APIService: %s", error)
            await asyncio.sleep(1.0)

    async def _certificates(self) -> tuple[pki.KeyPair, pki.KeyPair]:
        return await tls.serving_pair(self._api, self._options)

    async def _register(self, ca: pki.KeyPair) -> None:
        """Write the CA into the chart's APIService, so the aggregator trusts this server (with
        cert-manager, its cainjector writes it: wait for it to be there)."""
        if self._options.webhook_cert_secret:
            found = await client.ApiregistrationV1Api(self._api).read_api_service(self._options.api_service)
            registration.check_injected(
                f"APIService {self._options.api_service}", [found.spec.ca_bundle], ca.cert_pem
            )
        else:
            patch: dict[str, Any] = {"spec": {"caBundle": base64.b64encode(ca.cert_pem).decode()}}
            try:
                await client.ApiregistrationV1Api(self._api).patch_api_service(
                    self._options.api_service, patch
                )
            except ApiException as error:
                if error.status == 404:
                    raise RuntimeError(
                        f"APIService {self._options.api_service} does not exist: the chart makes it "
                        "(dataAPI.enabled=true); reinstall or upgrade the release"
                    ) from None
                raise
        self._ca_pem = ca.cert_pem
