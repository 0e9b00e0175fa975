"""Kubernetes Events for state transitions and key operations (never with key material)."""

from __future__ import annotations

import logging
import uuid

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from . import conditions, labels

logger = logging.getLogger(__name__)


async def post(
    api: client.ApiClient,
    involved: client.V1ObjectReference,
    *,
    reason: str,
    message: str,
    warning: bool = False,
) -> None:
    now = conditions.now_rfc3339()
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(
            name=f"{involved.name}.{uuid.uuid4().hex[:12]}", namespace=involved.namespace
        ),
        involved_object=involved,
        reason=reason,
        message=message[:1024],
        type="Warning" if warning else "Normal",
        first_timestamp=now,
        last_timestamp=now,
        count=1,
        source=client.V1EventSource(component=labels.OPERATOR_NAME),
        reporting_component=labels.OPERATOR_NAME,
    )
    try:
        await client.CoreV1Api(api).create_namespaced_event(involved.namespace, event)
    except ApiException as error:
        # Events are best effort: a refused event must never fail a reconciliation.
        logger.warning(
            "Event %s for %s/%s not posted: %s", reason, involved.namespace, involved.name, error.status
        )
