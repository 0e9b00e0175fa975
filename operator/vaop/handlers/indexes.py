"""Kopf indices: the operator's in-memory view of CustomerKeys, KeyVaults and who uses them.

Reconciliations and (later) admission decisions read these instead of calling the API.
"""

from __future__ import annotations

from typing import Any

import kopf

from .. import models


@kopf.index(models.GROUP, models.VERSION, "customerkeys")
def customer_keys(
    namespace: str, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (namespace, name): {
            "spec": dict(body.get("spec", {})),
            "status": dict(body.get("status", {})),
            "generation": body.metadata.get("generation"),
        }
    }


@kopf.index(models.GROUP, models.VERSION, "keyvaults")
def key_vaults(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    return {namespace: (name, dict(spec))}


@kopf.index(models.GROUP, models.VERSION, "videoanalyzeraccounts")
def customer_key_accounts(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[str, str] | None:
    """Accounts on a customer key, by namespace: a key or vault change re-checks them."""
    key_ref = (spec.get("encryption") or {}).get("keyRef")
    return {namespace: name} if key_ref else None


def first(index: kopf.Index[Any, Any], key: Any) -> Any | None:
    store = index.get(key)
    return next(iter(store), None) if store is not None else None
