"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

Every replica runs the loop. The holder renews the Lease every ``retry_period``; the others take
it over only once they have seen it unchanged for a whole ``lease_duration``, measured on their own
clock from when they observed it (never from the holder's timestamps, so clock skew between nodes
does not matter). A holder that cannot renew for ``renew_deadline`` (shorter than the duration)
stops leading before anyone else may start. A holder that shuts down releases the Lease so a
successor takes over within one ``retry_period``.

Leading and following are reported to two callbacks; losing the Lease calls ``on_stopped`` at
once, before the next attempt to win it back.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from . import leases, retry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseSettings:
    namespace: str
    name: str
    identity: str  # this replica: its pod name
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


@dataclass(frozen=True)
class _Record:
    holder: str
    renewed: str
    transitions: int


class LeaderElector:
    def __init__(
        self,
        api: client.ApiClient,
        settings: LeaseSettings,
        *,
        on_started: Callable[[], Awaitable[None]],
        on_stopped: Callable[[], Awaitable[None]],
    ) -> None:
        self._leases = client.CoordinationV1Api(api)
        self.settings = settings
        self._on_started = on_started
        self._on_stopped = on_stopped
        self.leading = False
        self.holder: str | None = None
        self.last_contact = 0.0  # monotonic time of the last answer from the apiserver
        self._observed: _Record | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0

    def problem(self) -> str | None:
        """For readiness: the loop reads the Lease every retry period, so silence means the
        apiserver cannot be reached."""
        if not self.last_contact:
            return "no answer from the apiserver yet"
        silent = time.monotonic() - self.last_contact
        if silent > 2 * self.settings.lease_duration:
            return f"no answer from the apiserver for {silent:.0f}s (leader election cannot read its Lease)"
        return None

    async def run(self) -> None:
        while True:
            try:
                won = await self._try_acquire_or_renew()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the apiserver is away or refuses: counted against the deadline
                logger.warning("Lease %s: %s", self.settings.name, retry.describe(error))
                won = False
            if won and not self.leading:
                self.leading = True
                logger.info("Lease %s won by %s: leading", self.settings.name, self.settings.identity)
                try:
                    await self._on_started()
                except Exception as error:  # e.g. the apiserver failed a read: step back, try next round
                    logger.warning(
                        "Lease %s: starting to lead failed: %s", self.settings.name, retry.describe(error)
                    )
                    self.leading = False
                    await self._on_stopped()
            elif self.leading and not won and self._must_stop():
                await self._stop_leading()
            await asyncio.sleep(self.settings.retry_period * random.uniform(1.0, 1.2))  # noqa: S311

    def _must_stop(self) -> bool:
        """Another holder took over, or renewals have failed for the whole renew deadline."""
        if self.holder not in (None, self.settings.identity):
            return True
        return time.monotonic() - self._renewed_at > self.settings.renew_deadline

    async def _stop_leading(self) -> None:
        self.leading = False
        logger.warning(
            "Lease %s lost by %s (holder now %s): stopping reconciliation",
            self.settings.name,
            self.settings.identity,
            self.holder or "unknown",
        )
        await self._on_stopped()

    async def release(self) -> None:
        """Give the Lease up (on shutdown), so a successor need not wait for it to expire."""
        if not self.leading:
            return
        await self._stop_leading()
        try:
            lease = await self._leases.read_namespaced_lease(self.settings.name, self.settings.namespace)
            if lease.spec.holder_identity != self.settings.identity:
                return
            now = leases.micro_time(datetime.datetime.now(datetime.UTC))
            body = self._body(
                lease.metadata.resource_version,
                holder=None,
                acquired=now,
                renewed=now,
                duration=1,
                transitions=lease.spec.lease_transitions or 0,
            )
            await self._leases.replace_namespaced_lease(self.settings.name, self.settings.namespace, body)
            logger.info("Lease %s released", self.settings.name)
        except ApiException as error:
            logger.warning("Releasing lease %s failed: %s", self.settings.name, retry.describe(error))

    async def _try_acquire_or_renew(self) -> bool:
        settings = self.settings
        now = datetime.datetime.now(datetime.UTC)
        try:
            lease = await self._leases.read_namespaced_lease(settings.name, settings.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body = self._body(
                None,
                holder=settings.identity,
                acquired=leases.micro_time(now),
                renewed=leases.micro_time(now),
                transitions=0,
            )
            if not await leases.write(self._leases, body):
                return False  # another replica created it first
            self._contact(settings.identity)
            return True
        self.last_contact = time.monotonic()
        spec = lease.spec
        record = _Record(spec.holder_identity or "", str(spec.renew_time), spec.lease_transitions or 0)
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        self.holder = record.holder or None
        mine = record.holder == settings.identity
        duration = spec.lease_duration_seconds or settings.lease_duration
        if record.holder and not mine and time.monotonic() - self._observed_at < duration:
            return False
        acquired = (
            leases.micro_time(spec.acquire_time) if mine and spec.acquire_time else leases.micro_time(now)
        )
        body = self._body(
            lease.metadata.resource_version,
            holder=settings.identity,
            acquired=acquired,
            renewed=leases.micro_time(now),
            transitions=record.transitions if mine else record.transitions + 1,
        )
        if not await leases.write(self._leases, body):
            return False  # changed under us: someone else renewed or took it
        self._contact(settings.identity)
        return True

    def _contact(self, holder: str) -> None:
        self.last_contact = self._renewed_at = time.monotonic()
        self.holder = holder

    def _body(self, resource_version: str | None, **spec: Any) -> dict[str, Any]:
        return leases.body(
            self.settings.namespace,
            self.settings.name,
            resource_version=resource_version,
            duration=spec.pop("duration", None) or self.settings.lease_duration,
            **spec,
        )
