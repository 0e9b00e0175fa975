"""Tenant-side key administration for the kubernetes provider: create, rotate and disable key versions.

These write exactly what a tenant could write with openssl and kubectl (docs/providers/kubernetes.md);
the operator itself never writes a tenant's key Secrets.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from kubernetes_asyncio import client

from . import conditions, kubeclient, models
from .crypto import rsa
from .providers import kubernetes as kubernetes_provider


async def key_namespace(api: client.ApiClient, namespace: str, vault: str) -> str:
    """Where the KeyVault ``vault`` keeps its key Secrets."""
    body = await client.CustomObjectsApi(api).get_namespaced_custom_object(
        models.GROUP, models.VERSION, namespace, "keyvaults", vault
    )
    spec = models.KeyVaultSpec.parse(body["spec"])
    if spec.provider.kubernetes is None:
        raise ValueError(f"KeyVault {vault} uses the {spec.provider.name} provider; manage its keys there")
    return spec.provider.kubernetes.namespace or namespace


async def _versions(core: client.CoreV1Api, namespace: str, key_name: str) -> list[int]:
    found = await core.list_namespaced_secret(
        namespace, label_selector=f"{kubernetes_provider.LABEL_KEY_NAME}={key_name}"
    )
    labels = [(s.metadata.labels or {}).get(kubernetes_provider.LABEL_KEY_VERSION, "") for s in found.items]
    return sorted(int(v) for v in labels if v.isdigit())


async def add_version(api: client.ApiClient, namespace: str, key_name: str, pem: bytes) -> int:
    """Store ``pem`` as the next version of ``key_name`` (1 if it is the first) and return its number."""
    core = client.CoreV1Api(api)
    existing = await _versions(core, namespace, key_name)
    version = (existing[-1] + 1) if existing else 1
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=f"{key_name.lower().replace('_', '-')}-v{version}",
            labels={
                kubernetes_provider.LABEL_KEY_NAME: key_name,
                kubernetes_provider.LABEL_KEY_VERSION: str(version),
            },
        ),
        type="Opaque",
        immutable=True,
        data={kubernetes_provider.DATA_KEY: base64.b64encode(pem).decode()},
    )
    await core.create_namespaced_secret(namespace, secret)
    return version


async def create_rsa(api: client.ApiClient, namespace: str, key_name: str, *, size: int) -> int:
    """A new RSA key version of ``size`` bits."""
    if size not in rsa.ALLOWED_RSA_SIZES:
        raise ValueError(f"RSA keys must be {', '.join(map(str, rsa.ALLOWED_RSA_SIZES))} bits, not {size}")
    return await add_version(api, namespace, key_name, rsa.generate(size))


async def set_enabled(
    api: client.ApiClient, namespace: str, key_name: str, version: int, *, enabled: bool
) -> None:
    annotation: dict[str, str | None] = {kubernetes_provider.ANNOTATION_ENABLED: str(enabled).lower()}
    await _annotate(api, namespace, key_name, version, annotation)


async def set_expiry(
    api: client.ApiClient, namespace: str, key_name: str, version: int, *, expires_on: str | None
) -> None:
    """Give the version an expiry date (RFC 3339), or none; past it, it wraps no new account key."""
    if expires_on is not None:
        try:
            conditions.parse_rfc3339(expires_on)
        except ValueError:
            raise ValueError(f"{expires_on!r} is not an RFC 3339 date, e.g. 2027-03-31T00:00:00Z") from None
    await _annotate(
        api, namespace, key_name, version, {kubernetes_provider.ANNOTATION_EXPIRES_ON: expires_on}
    )


async def _annotate(
    api: client.ApiClient, namespace: str, key_name: str, version: int, annotations: dict[str, str | None]
) -> None:
    core = client.CoreV1Api(api)
    selector = (
        f"{kubernetes_provider.LABEL_KEY_NAME}={key_name},{kubernetes_provider.LABEL_KEY_VERSION}={version}"
    )
    found = await core.list_namespaced_secret(namespace, label_selector=selector)
    if not found.items:
        raise ValueError(f"key {key_name!r} has no version {version} in namespace {namespace}")
    patch = {"metadata": {"annotations": annotations}}
    for secret in found.items:
        await core.patch_namespaced_secret(
            secret.metadata.name, namespace, patch, _content_type=kubeclient.MERGE_PATCH
        )


async def listing(api: client.ApiClient, namespace: str) -> str:
    """The namespace's CustomerKeys as their last check found them, whatever their provider: the
    version that wraps, when it expires, and whether it is usable."""
    found = await client.CustomObjectsApi(api).list_namespaced_custom_object(
        models.GROUP, models.VERSION, namespace, "customerkeys"
    )
    rows = [("NAME", "VAULT", "VERSION", "EXPIRES", "READY", "REASON")]
    for item in found.get("items", []):
        status = item.get("status") or {}
        ready = conditions.find(status.get("conditions"), conditions.READY) or {}
        rows.append(
            (
                item["metadata"]["name"],
                item["spec"]["vaultRef"]["name"],
                str(status.get("currentVersion") or "-"),
                str(status.get("currentVersionExpiresOn") or "never"),
                str(ready.get("status", "Unknown")),
                str(ready.get("reason", "")),
            )
        )
    return table(rows)


def table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as kubectl prints them: columns left-aligned, three spaces apart (the first row heads them)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
