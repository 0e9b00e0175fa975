"""VideoAnalyzerAccount handlers: turn events into reconciliations and status patches."""

from __future__ import annotations

from typing import Any

import kopf

from .. import conditions, models
from ..models import AccountState


@kopf.on.resume(models.GROUP, models.VERSION, "videoanalyzeraccounts")
@kopf.on.create(models.GROUP, models.VERSION, "videoanalyzeraccounts")
@kopf.on.update(models.GROUP, models.VERSION, "videoanalyzeraccounts", field="spec")
async def reconcile_account(meta: kopf.Meta, status: kopf.Status, patch: kopf.Patch, **_: Any) -> None:
    generation = meta.get("generation")
    merged = conditions.merge(
        status.get("conditions"),
        [
            conditions.Condition(
                conditions.READY,
                "False",
                conditions.Reason.PROVISIONING,
                "The account is being provisioned.",
            )
        ],
        generation=generation,
    )
    patch.status["state"] = AccountState.PROVISIONING.value
    patch.status["observedGeneration"] = generation
    patch.status["conditions"] = merged
