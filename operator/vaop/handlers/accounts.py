"""VideoAnalyzerAccount events: every replica keeps the account's record (``accountstore``); on the
leader, a new, changed or deleted account is enqueued.

Raw watch events, not Kopf's change-detecting handlers: those write bookkeeping annotations on
every object from every replica, and the controller reconciles from the account's whole current
state anyway (a new leader enqueues every account; see reconcilers/leading.py).
"""

from __future__ import annotations

from typing import Any

import kopf

from .. import accountstore, models
from . import indexes


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
    accounts: accountstore.AccountStore = memo.accounts
    accounts.seen(type, namespace, name, body)  # first: the reconciliation reads the account from here
    if memo.data_api is not None:  # every replica: a locked or deleted account's key is dropped now
        memo.data_api.keys.account_changed(namespace, name, accounts.get((namespace, name)))
    controller = memo.leader.controller
    if controller is None:
        return  # a follower: the leader reconciles
    controller.watched((namespace, name), str(body.metadata.get("resourceVersion", "")))
    if type != "MODIFIED" or indexes.spec_changed(body) or body.metadata.get("deletionTimestamp"):
        controller.queue.add((namespace, name))
