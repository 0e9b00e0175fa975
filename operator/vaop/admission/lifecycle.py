"""Start the webhook, point the chart's configuration at it, keep its certificate current.

Every replica serves admission from its own watches (Kopf indices and the account store), leader
or not, so the Service can send a request to any ready replica.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes_asyncio import client

from .. import accountstore, config, kubeclient, pki, platformkeys, platformroot
from ..domain import admission as domain_admission
from ..runtime import retry
from . import registration, server, tls
from . import view as admission_view

logger = logging.getLogger(__name__)
REFRESH_SECONDS = 600.0
PLATFORM_KEYS_SECONDS = 30.0
RETRY_PLATFORM_KEYS_SECONDS = 2.0
RETRY_SECONDS = 10.0


class Webhook:
    def __init__(
        self,
        options: config.OperatorConfig,
        api: client.ApiClient,
        root: platformroot.Root | None = None,
        *,
        renewed: asyncio.Event | None = None,
    ) -> None:
        self._options = options
        self._renewed = renewed  # set when cert-manager renews the certificate
        self._root = root
        self._api = api
        self._server: server.WebhookServer | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._platform_reader: asyncio.Task[None] | None = None
        self._view: domain_admission.View | None = None
        self._ca_pem = b""
        self._problem: str | None = "not started yet"
        # Until read once, a restored account-key Secret would be refused as PlatformKeyMissing.
        self._platform_keys_problem: str | None = "the platform keys have not been read yet"

    def problem(self) -> str | None:
        """What keeps the webhook from answering the apiserver as it should, for the readiness check:
        its registration, or the platform keys that restored account keys are checked against."""
        return self._problem or self._platform_keys_problem

    async def start(
        self,
        *,
        accounts: accountstore.AccountStore,
        customer_keys: kopf.Index[Any, Any],
        key_vaults: kopf.Index[Any, Any],
    ) -> None:
        username = await kubeclient.whoami(self._api)
        ca, serving = await self._certificates()
        self._view = admission_view.make(
            accounts=accounts,
            customer_keys=customer_keys,
            key_vaults=key_vaults,
            operator_username=username,
            restore_identities=frozenset(self._options.backup_identities),
            infrastructure_keys=None,
        )
        self._server = server.WebhookServer(
            self._current_view,
            serving=serving,
            host=self._options.webhook_host,
            port=self._options.webhook_port,
        )
        await self._server.start()
        self._problem = "the ValidatingWebhookConfiguration does not name this webhook's CA yet"
        self._refresher = asyncio.create_task(self._keep_current(ca), name="webhook-registration")
        self._platform_reader = asyncio.create_task(self._read_platform_keys(), name="webhook-platform-keys")

    def _current_view(self) -> domain_admission.View:
        assert self._view is not None
        return self._view

    async def _read_platform_keys(self) -> None:
        """The infrastructure key versions, which restored envelopes are checked against; read again
        every half minute, so platform keys restored (or rotated) meanwhile are known soon, and every
        two seconds while there are none (the leader makes them when it first starts)."""

        async def read() -> None:
            found: Mapping[str, bytes] | None = await platformkeys.infrastructure_versions(
                self._api, self._options.namespace, self._root
            )
            if self._view is not None and found != self._view.infrastructure_keys:
                self._view = dataclasses.replace(self._view, infrastructure_keys=found)
            self._platform_keys_problem = None  # read (or none exist yet: the leader makes them)

        def period() -> float:
            known = self._view is not None and self._view.infrastructure_keys
            return PLATFORM_KEYS_SECONDS if known else RETRY_PLATFORM_KEYS_SECONDS

        def told(problem: str | None) -> None:
            if problem is not None and self._platform_keys_problem is not None:  # never read yet
                self._platform_keys_problem = problem  # once read, the keys known stay in use

        await retry.every(period, read, doing="Reading the infrastructure key for admission", problem=told)

    async def stop(self) -> None:
        for task in (self._refresher, self._platform_reader):
            if task is not None:
                task.cancel()
        if self._server is not None:
            await self._server.stop()

    async def _certificates(self) -> tuple[pki.KeyPair, pki.KeyPair]:
        return await tls.serving_pair(self._api, self._options)

    async def _register(self, ca: pki.KeyPair) -> None:
        if self._options.webhook_cert_secret:  # with cert-manager, its cainjector writes the caBundle
            await registration.wait_for_injection(
                self._api, name=self._options.webhook_configuration, ca_pem=ca.cert_pem
            )
        else:
            await registration.point_at_operator(
                self._api,
                name=self._options.webhook_configuration,
                ca_pem=ca.cert_pem,
                url=self._options.webhook_url,
            )
        self._ca_pem = ca.cert_pem
        self._problem = None

    async def _keep_current(self, ca: pki.KeyPair) -> None:
        """Register now (retrying until it works), then pick up renewals (ours 30 days ahead, or
        cert-manager's) and keep the caBundle in step."""

        async def refresh() -> None:
            nonlocal ca
            serving = None
            if self._ca_pem:
                ca, serving = await self._certificates()
            if ca.cert_pem != self._ca_pem or self._problem is not None:
                await self._register(ca)  # a new CA is trusted before it is served
            if serving is not None:
                assert self._server is not None
                self._server.reload(serving)

        await retry.every(
            REFRESH_SECONDS,
            refresh,
            doing="Registering the webhook",
            retry_after=RETRY_SECONDS,  # not ready until it works again
            problem=self._told,
            wake=self._renewed,
        )

    def _told(self, problem: str | None) -> None:
        self._problem = problem
