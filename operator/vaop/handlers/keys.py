"""CustomerKey and KeyVault handlers: a change re-checks the namespace's accounts on customer keys."""

from __future__ import annotations

from typing import Any

import kopf

from .. import models, providers
from ..domain import keys as keys_domain


def _recheck_namespace(namespace: str, memo: kopf.Memo, customer_key_accounts: kopf.Index[str, str]) -> None:
    for account in customer_key_accounts.get(namespace, ()):
        memo.controller.queue.add((namespace, account))


@kopf.on.event(models.GROUP, models.VERSION, "customerkeys")
async def customer_key_event(
    namespace: str,
    type: str | None,
    body: kopf.Body,
    memo: kopf.Memo,
    customer_key_accounts: kopf.Index[str, str],
    **_: Any,
) -> None:
    # Status-only updates are the operator's own writes: nothing to re-check.
    if type in ("ADDED", "DELETED") or type is None or _spec_changed(body):
        _recheck_namespace(namespace, memo, customer_key_accounts)


@kopf.on.event(models.GROUP, models.VERSION, "keyvaults")
async def key_vault_event(
    namespace: str, memo: kopf.Memo, customer_key_accounts: kopf.Index[str, str], **_: Any
) -> None:
    _recheck_namespace(namespace, memo, customer_key_accounts)


def _spec_changed(body: kopf.Body) -> bool:
    status = body.get("status") or {}
    return status.get("observedGeneration") != body.metadata.get("generation")


@kopf.on.resume(models.GROUP, models.VERSION, "keyvaults")
@kopf.on.create(models.GROUP, models.VERSION, "keyvaults")
@kopf.on.update(models.GROUP, models.VERSION, "keyvaults", field="spec")
async def key_vault_status(
    spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch, **_: Any
) -> None:
    patch.status.update(
        keys_domain.key_vault_status(
            models.KeyVaultSpec.parse(dict(spec)),
            available=providers.available(),
            generation=meta.get("generation"),
            previous=status.get("conditions"),
        )
    )
