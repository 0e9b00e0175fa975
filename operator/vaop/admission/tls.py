"""The webhook's CA and serving certificate, kept in a Secret so every replica and restart agrees.

Made on first start; the serving certificate is reissued (same CA, so the caBundle stays valid)
when less than 30 days remain. With cert-manager, its Secret is read instead, and watched so that a
renewal is served within a second of being written (``RenewalWatch``).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import config, kubeclient, labels, pki
from ..runtime import watchcache

_RENEW_BEFORE = datetime.timedelta(days=30)


def server_context(serving: pki.KeyPair) -> ssl.SSLContext:
    """A TLS 1.2+ server context serving ``serving``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_serving(context, serving)
    return context


def load_serving(context: ssl.SSLContext, serving: pki.KeyPair) -> None:
    """(Re)load the serving certificate: new TLS connections get it, open ones finish with the old."""
    # ssl wants files: write them to a private temporary folder, load, and remove them again.
    with tempfile.TemporaryDirectory(prefix="vaop-tls-") as folder:
        cert, key = Path(folder) / "tls.crt", Path(folder) / "tls.key"
        cert.write_bytes(serving.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(serving.key_pem)
        context.load_cert_chain(cert, key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def load_external(
    api: client.ApiClient, *, namespace: str, name: str
) -> tuple[pki.KeyPair, pki.KeyPair]:
    """(CA, serving key pair) from a kubernetes.io/tls Secret kept by someone else, e.g. cert-manager
    (which writes ca.crt, tls.crt and tls.key). The CA's key is not needed, nor read."""
    data = kubeclient.secret_data(await client.CoreV1Api(api).read_namespaced_secret(name, namespace))
    missing = [k for k in ("ca.crt", "tls.crt", "tls.key") if k not in data]
    if missing:
        raise ValueError(f"Secret {namespace}/{name} lacks {', '.join(missing)}")
    return pki.KeyPair(data["ca.crt"], b""), pki.KeyPair(data["tls.crt"], data["tls.key"])


async def load_or_create(
    api: client.ApiClient,
    *,
    namespace: str,
    dns_names: list[str],
    ip_addresses: list[str],
    name: str,
) -> tuple[pki.KeyPair, pki.KeyPair]:
    """(CA, serving key pair) for the webhook, kept in Secret ``name``."""
    core = client.CoreV1Api(api)
    secret = await kubeclient.read_secret_or_none(core, name, namespace)
    if secret is not None:
        data = kubeclient.secret_data(secret)
        ca = pki.KeyPair(data["ca.crt"], data["ca.key"])
        serving = pki.KeyPair(data["tls.crt"], data["tls.key"])
        fresh = pki.not_after(serving.cert_pem) - datetime.datetime.now(datetime.UTC) > _RENEW_BEFORE
        if fresh and pki.covers(serving.cert_pem, dns_names, ip_addresses):
            return ca, serving
    else:
        ca = pki.make_ca("video-analyzer-operator-webhook-ca")
    serving = pki.issue_serving(ca, dns_names=dns_names, ip_addresses=ip_addresses)
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, labels=dict(labels.MANAGED)),
        type="kubernetes.io/tls",
        data={
            "ca.crt": _b64(ca.cert_pem),
            "ca.key": _b64(ca.key_pem),
            "tls.crt": _b64(serving.cert_pem),
            "tls.key": _b64(serving.key_pem),
        },
    )
    if secret is None:
        try:
            await core.create_namespaced_secret(namespace, body)
        except ApiException as error:
            if error.status == 409:  # another replica was first: use its certificates
                return await load_or_create(
                    api, namespace=namespace, dns_names=dns_names, ip_addresses=ip_addresses, name=name
                )
            raise
    else:
        body.metadata.resource_version = secret.metadata.resource_version
        await core.replace_namespaced_secret(name, namespace, body)
    return ca, serving


async def serving_pair(
    api: client.ApiClient, options: config.OperatorConfig
) -> tuple[pki.KeyPair, pki.KeyPair]:
    """(CA, serving key pair) of the webhook and the data API: cert-manager's Secret when the chart
    says so, else the operator's own (covering both Services' names)."""
    if options.webhook_cert_secret:
        return await load_external(api, namespace=options.namespace, name=options.webhook_cert_secret)
    return await load_or_create(
        api,
        namespace=options.namespace,
        dns_names=options.serving_names(),
        ip_addresses=["127.0.0.1"],
        name=options.own_tls_secret,
    )


class RenewalWatch:
    """Watches the Secret someone else keeps (cert-manager's) and wakes each subscriber's refresh
    when it changes: the webhook and the data API serve a renewed certificate at once, rather than
    at their next periodic refresh (minutes), long before the old one expires."""

    def __init__(self, api: client.ApiClient, *, namespace: str, name: str) -> None:
        self._api = api
        self._namespace = namespace
        self._name = name
        self._subscribers: list[asyncio.Event] = []

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self._subscribers.append(event)
        return event

    async def run(self) -> None:
        await watchcache.reflect(
            client.CoreV1Api(self._api).list_namespaced_secret,
            self,
            what=f"Secret {self._namespace}/{self._name}",
            namespace=self._namespace,
            field_selector=f"metadata.name={self._name}",
        )

    async def replace(self, listed: AsyncIterator[Any]) -> None:
        async for _ in listed:  # a relist may follow a change the watch missed
            pass
        self._wake()

    def changed(self, kind: str, obj: Any) -> None:
        self._wake()

    def _wake(self) -> None:
        for event in self._subscribers:
            event.set()
