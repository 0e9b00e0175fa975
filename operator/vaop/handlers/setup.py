"""Operator-wide Kopf settings, applied once at start-up."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from .. import models

_ANNOTATION_PREFIX = f"kopf.{models.GROUP}"


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Kopf keeps its bookkeeping in annotations: the CRD schemas are structural and would prune
    # anything Kopf wrote under status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=_ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=_ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{models.GROUP}/finalizer"
    settings.posting.level = logging.INFO
    # Re-establish watches regularly so a silently dropped connection cannot stall the operator.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    # Failed handlers back off instead of retrying hot.
    settings.execution.max_workers = 8
    settings.batching.error_delays = (1, 2, 5, 10, 30, 60, 120, 300)
