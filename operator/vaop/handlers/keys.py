"""CustomerKey and KeyVault events: on the leader, a change re-checks the namespace's accounts on
customer keys, and a KeyVault's status is brought up to date."""

from __future__ import annotations

from typing import Any

import kopf

from .. import conditions, models
from . import replica


def _recheck_namespace(namespace: str, memo: kopf.Memo) -> None:
    this = replica.of(memo)
    controller = this.leader.controller
    if controller is None:
        return
    for account in this.accounts.on_customer_keys(namespace):
        controller.queue.add((namespace, account))


@kopf.on.event(models.GROUP, models.VERSION, "customerkeys")
async def customer_key_event(
    *,
    namespace: str,
    name: str,
    type: str | None,
    body: kopf.Body,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    # Status-only updates are the operator's own writes: nothing to re-check.
    if type in ("ADDED", "DELETED") or type is None or conditions.spec_changed(body):
        _recheck_namespace(namespace, memo)
        controller = replica.of(memo).leader.controller
        if controller is not None and type != "DELETED":
            await controller.key_status.check_unused_key(namespace, name)


@kopf.on.event(models.GROUP, models.VERSION, "keyvaults")
async def key_vault_event(
    *,
    namespace: str,
    type: str | None,
    body: kopf.Body,
    memo: kopf.Memo,
    customer_keys: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    controller = replica.of(memo).leader.controller
    if controller is None:
        return
    if type in ("ADDED", "DELETED") or type is None or conditions.spec_changed(body):
        _recheck_namespace(namespace, memo)
        for key_namespace, key in list(customer_keys):  # keys no account uses name vaults too
            if key_namespace == namespace:
                await controller.key_status.check_unused_key(namespace, key)
    if type != "DELETED":
        await controller.key_status.refresh_key_vault(body)
