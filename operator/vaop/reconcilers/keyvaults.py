"""KeyVault status: what the operator can say of a vault from its spec and from reaching it without
credentials, written when it changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import kubeclient, models, providers
from ..domain import keys as keys_domain


async def wanted_status(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The status the KeyVault should show, or None when it already shows it."""
    current: Mapping[str, Any] = body.get("status") or {}
    spec = models.KeyVaultSpec.parse(body.get("spec"))
    status = keys_domain.key_vault_status(
        spec,
        refusal=await providers.probe(spec),
        generation=body["metadata"].get("generation"),
        previous=current.get("conditions"),
    )
    return None if all(current.get(k) == v for k, v in status.items()) else status


async def refresh(api: client.ApiClient, body: Mapping[str, Any]) -> None:
    status = await wanted_status(body)
    if status is None:
        return
    meta = body["metadata"]
    try:
        await client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
            models.GROUP,
            models.VERSION,
            meta["namespace"],
            "keyvaults",
            meta["name"],
            {"status": status},
            _content_type=kubeclient.MERGE_PATCH,
        )
    except ApiException as error:
        if error.status != 404:  # deleted meanwhile: nothing to report on
            raise


async def listing(api: client.ApiClient, namespace: str | None = None) -> list[dict[str, Any]]:
    """Every KeyVault, or those of one namespace."""
    custom = client.CustomObjectsApi(api)
    if namespace is None:
        found = await custom.list_cluster_custom_object(models.GROUP, models.VERSION, "keyvaults")
    else:
        found = await custom.list_namespaced_custom_object(
            models.GROUP, models.VERSION, namespace, "keyvaults"
        )
    return list(found.get("items", []))
