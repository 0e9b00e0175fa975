"""VideoAnalyzerAccount handlers: every event only enqueues the account for the controller."""

from __future__ import annotations

from typing import Any

import kopf

from .. import models


@kopf.on.resume(models.GROUP, models.VERSION, "videoanalyzeraccounts")
@kopf.on.create(models.GROUP, models.VERSION, "videoanalyzeraccounts")
@kopf.on.update(models.GROUP, models.VERSION, "videoanalyzeraccounts", field="spec")
async def account_changed(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    memo.controller.queue.add((namespace, name))
