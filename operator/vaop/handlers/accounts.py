"""VideoAnalyzerAccount events: every replica keeps the account's record (``accountstore``); on the
leader, a new, changed or deleted account is enqueued.

Raw watch events, not Kopf's change-detecting handlers: those write bookkeeping annotations on
every object from every replica, and the controller reconciles from the account's whole current
state anyway (a new leader enqueues every account; see reconcilers/leading.py).
"""

from __future__ import annotations

from typing import Any

import kopf

from .. import conditions, models
from . import replica


@kopf.on.event(models.GROUP, models.VERSION, "videoanalyzeraccounts")
async def account_event(
    *,
    namespace: str,
    name: str,
    type: str | None,
    body: kopf.Body,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    this = replica.of(memo)
    accounts = this.accounts
    before = accounts.get((namespace, name))
    # First: the reconciliation reads the account from here (and the data API, subscribed to the
    # store on every replica, drops a locked or deleted account's key now).
    accounts.seen(type, namespace, name, body)
    controller = this.leader.controller
    if controller is None:
        return  # a follower: the leader reconciles
    own_annotation = controller.watched((namespace, name), str(body.metadata.get("resourceVersion", "")))
    if own_annotation:
        return  # the reconciliation that wrote it writes the status next
    after = accounts.get((namespace, name))
    upkeep = this.leader.sealed_objects
    if upkeep is not None and _became_active(before, after):
        upkeep.account_active((namespace, name))  # its restored (or format 1) data can be made right
    if (
        type != "MODIFIED"
        or conditions.spec_changed(body)
        or body.metadata.get("deletionTimestamp")
        or _claims(before) != _claims(after)  # a person set the account ID, or asked for a new key
    ):
        controller.queue.add((namespace, name))


def _became_active(before: models.AccountRecord | None, after: models.AccountRecord | None) -> bool:
    active = models.AccountState.ACTIVE.value
    return after is not None and after.state == active and (before is None or before.state != active)


def _claims(record: models.AccountRecord | None) -> tuple[str, str] | None:
    """What the account's annotations say of its key: its account ID, a key a person gives up."""
    return None if record is None else (record.account_id, record.replace_key)
