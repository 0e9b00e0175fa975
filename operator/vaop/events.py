"""Kubernetes Events for state transitions and key operations (never with key material)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from kubernetes_asyncio import client

from . import conditions, labels, models

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
    # The response is not read into a model: nothing uses it, and decoding it (four timestamps) took
    # about 40 % of the operator's time posting an Event (bench.scale --profile: 10.9 % -> 6.6 %).
    response = await client.CoreV1Api(api).create_namespaced_event(
        involved.namespace, event, _preload_content=False
    )
    async with response:
        if response.status >= 300:
            # Events are best effort: a refused event must never fail a reconciliation.
            logger.warning(
                "Event %s for %s/%s not posted: %s",
                reason,
                involved.namespace,
                involved.name,
                response.status,
            )


class RotationSummary:
    """Re-wraps after a key rotation, told per CustomerKey: the accounts re-wrapped within a few
    seconds of each other make one Event on their key (10,000 accounts rotated make a handful of
    Events, not 10,000). Each account's status shows its own wrap (accountKey.wrappedBy, wrappedAt)."""

    def __init__(self, api: client.ApiClient, *, window: float = 5.0) -> None:
        self._api = api
        self._window = window
        self._pending: dict[tuple[str, str, str], list[str]] = {}  # (namespace, key, version) -> accounts
        self._flushing: asyncio.Task[None] | None = None

    def add(self, namespace: str, key: str, version: str, account: str) -> None:
        self._pending.setdefault((namespace, key, version), []).append(account)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush_later(), name="rotation-events")

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._window)
        await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        for (namespace, key, version), accounts in pending.items():
            named = ", ".join(sorted(accounts)[:_NAMED])
            more = f" and {len(accounts) - _NAMED} more" if len(accounts) > _NAMED else ""
            involved = client.V1ObjectReference(
                api_version=models.API_VERSION, kind="CustomerKey", name=key, namespace=namespace
            )
            message = (
                f"Account keys of {len(accounts)} account(s) re-wrapped to version {version}: {named}{more}."
            )
            await post(self._api, involved, reason="AccountKeysRewrapped", message=message)

    async def close(self) -> None:
        """Say what is pending now (the leader stops), without holding up the stop for long."""
        if self._flushing is not None:
            self._flushing.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout=1.0)


_NAMED = 10
