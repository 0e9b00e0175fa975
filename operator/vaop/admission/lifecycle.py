"""Start the webhook, register it, and keep its certificate and caBundle current while it runs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from kubernetes_asyncio import client

from .. import config, kubeclient, pki
from ..reconcilers import monitor
from . import registration, server, tls
from . import view as admission_view

logger = logging.getLogger(__name__)
REFRESH_SECONDS = 600.0


class Webhook:
    def __init__(self, options: config.OperatorConfig, api: client.ApiClient) -> None:
        self._options = options
        self._api = api
        self._server: server.WebhookServer | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._ca_pem = b""
        self._username = ""

    async def start(
        self,
        *,
        accounts: dict[tuple[str, str], monitor.AccountView],
        customer_keys: kopf.Index[Any, Any],
        key_vaults: kopf.Index[Any, Any],
    ) -> None:
        self._username = await kubeclient.whoami(self._api)
        ca, serving = await self._certificates()
        view = admission_view.make(
            accounts=accounts,
            customer_keys=customer_keys,
            key_vaults=key_vaults,
            operator_username=self._username,
        )
        self._server = server.WebhookServer(
            lambda: view, serving=serving, host=self._options.webhook_host, port=self._options.webhook_port
        )
        await self._server.start()
        await self._register(ca)
        self._refresher = asyncio.create_task(self._refresh(), name="webhook-certificates")

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        if self._server is not None:
            await self._server.stop()

    async def _certificates(self) -> tuple[pki.KeyPair, pki.KeyPair]:
        options = self._options
        if options.webhook_cert_secret:
            return await tls.load_external(
                self._api, namespace=options.namespace, name=options.webhook_cert_secret
            )
        service = f"{options.webhook_service}.{options.namespace}.svc"
        return await tls.load_or_create(
            self._api,
            namespace=options.namespace,
            dns_names=[service, f"{service}.cluster.local"],
            ip_addresses=["127.0.0.1"],
        )

    async def _register(self, ca: pki.KeyPair) -> None:
        options = self._options
        configuration = registration.build(
            name=options.webhook_configuration,
            ca_pem=ca.cert_pem,
            operator_username=self._username,
            operator_namespace=options.namespace,
            url=options.webhook_url,
            service=options.webhook_service,
        )
        await registration.apply(self._api, configuration)
        self._ca_pem = ca.cert_pem

    async def _refresh(self) -> None:
        """Pick up renewals (ours 30 days ahead, or cert-manager's) and keep the caBundle in step."""
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                ca, serving = await self._certificates()
                assert self._server is not None
                self._server.reload(serving)
                if ca.cert_pem != self._ca_pem:
                    await self._register(ca)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(
                    "Refreshing the webhook certificate failed; retrying in %ss", REFRESH_SECONDS
                )
