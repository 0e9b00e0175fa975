"""Shards: an operator release that reconciles only the namespaces its selector picks.

Without a selector a release owns every namespace (``AllNamespaces``): one release per cluster.

With one (chart value ``sharding.namespaceSelector``), ``NamespaceClaims`` watches the Namespaces
that match and holds a *claim* on each: a Lease ``vaop-claim-<namespace>`` in the operator's
namespace, which every release shares, held in the name of the release (its leader-election
Lease). The leader writes to a namespace only while its release holds the claim, so two releases
never both write one account, even when their selectors overlap:

- a namespace that starts to match is claimed once the claim is free: there is none, or its holder
  has no live leader (its Lease is gone, released, or unrenewed for a whole lease duration as this
  process observes it, never by the holder's clock);
- a namespace that stops matching (relabelled, the selector changed, or deleted) is handed over:
  no new work starts on it, the work under way finishes, then the claim is deleted and the release
  whose selector picks it claims it.

A new leader of the same release resumes its claims as they are (a failover moves no namespace).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from . import labels
from .runtime import leases, retry, watchcache

logger = logging.getLogger(__name__)

CLAIM_PREFIX = "vaop-claim-"
CLAIM_LABEL = {labels.COMPONENT: "namespace-claim"}
LISTING_TIMEOUT = 30.0
T = TypeVar("T")


class Shard(Protocol):
    def owns(self, namespace: str) -> bool: ...

    def enter(self, namespace: str) -> bool:
        """Start a piece of work on ``namespace`` if this release owns it (then ``leave`` after)."""
        ...

    def leave(self, namespace: str) -> None: ...


class AllNamespaces:
    """No selector: every namespace is this release's."""

    def owns(self, namespace: str) -> bool:
        return True

    def enter(self, namespace: str) -> bool:
        return True

    def leave(self, namespace: str) -> None:
        return None


async def within(shard: Shard, namespace: str, work: Callable[[], Awaitable[T]], otherwise: T) -> T:
    """``work()`` if this release owns ``namespace`` (counted as work under way there, which a
    handover waits for), else ``otherwise``."""
    if not shard.enter(namespace):
        return otherwise
    try:
        return await work()
    finally:
        shard.leave(namespace)


def selector_string(selector: Mapping[str, Any]) -> str:
    """A LabelSelector (matchLabels, matchExpressions) as the apiserver's labelSelector parameter."""
    terms = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator in ("In", "NotIn"):
            terms.append(f"{key} {operator.lower()} ({','.join(values)})")
        elif operator == "Exists":
            terms.append(key)
        elif operator == "DoesNotExist":
            terms.append(f"!{key}")
        else:
            raise ValueError(
                f"namespaceSelector operator {operator!r} is not one of In, NotIn, Exists, DoesNotExist"
            )
    if not terms:
        raise ValueError("namespaceSelector selects every namespace: leave it unset instead")
    return ",".join(terms)


def claim_name(namespace: str) -> str:
    return CLAIM_PREFIX + namespace


class NamespaceClaims:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        release: str,
        selector: str,
        on_gained: Callable[[str], Awaitable[None]],
        on_lost: Callable[[str], None],
        retry_period: float = 2.0,
    ) -> None:
        self._leases = client.CoordinationV1Api(api)
        self._namespace = namespace  # the operator's: claims and every release's leader Lease
        self.release = release
        self._on_gained = on_gained
        self._on_lost = on_lost
        self._retry_period = retry_period
        self._matching = watchcache.WatchCache(
            client.CoreV1Api(api).list_namespace, label_selector=selector, on_event=self._namespace_changed
        )
        self._owned: set[str] = set()
        self._busy: Counter[str] = Counter()  # work under way, by namespace
        self._drained: dict[str, asyncio.Event] = {}  # namespaces being handed over, set when idle
        self._wake = asyncio.Event()
        self._waiting_on: dict[str, str] = {}  # namespace -> the live release holding its claim
        self._seen_leaders: dict[str, tuple[str, float]] = {}  # release -> (lease record, first seen)
        self._task: asyncio.Task[None] | None = None

    # ---- what the leader's work asks -----------------------------------------------------------

    def owns(self, namespace: str) -> bool:
        return namespace in self._owned

    def enter(self, namespace: str) -> bool:
        if namespace not in self._owned:
            return False
        self._busy[namespace] += 1
        return True

    def leave(self, namespace: str) -> None:
        self._busy[namespace] -= 1
        if self._busy[namespace] <= 0:
            del self._busy[namespace]
            if namespace in self._drained:
                self._drained.pop(namespace).set()

    # ---- the loop ------------------------------------------------------------------------------

    async def start(self) -> None:
        """List the matching namespaces and claim what is free before the leader's first pass (a
        listing that fails fails the start, which the leader election tries again)."""
        self._task = asyncio.create_task(self._matching.run(), name="sharding-namespaces")
        try:
            await asyncio.wait_for(self._matching.synced.wait(), timeout=LISTING_TIMEOUT)
        except TimeoutError:
            await self.stop()
            raise RuntimeError(
                f"namespaces matching the shard's selector not listed within {LISTING_TIMEOUT:.0f}s"
            ) from None
        await self._round()

    async def stop(self) -> None:
        """The leader stops: claims stay with the release, for its next leader."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._owned.clear()

    async def run(self) -> None:
        """Claim and hand over every retry period, and at once when a namespace changes."""
        await retry.every(
            self._retry_period, self._round, doing="Namespace claims", wake=self._wake, at_once=False
        )

    def _namespace_changed(self, kind: str, namespace: Any) -> None:
        self._wake.set()

    def _wanted(self) -> set[str]:
        return {name for _, name in self._matching.held()}

    async def _round(self) -> None:
        wanted = self._wanted()
        for namespace in sorted(self._owned - wanted):
            await self._hand_over(namespace)
        for namespace in sorted(wanted - self._owned):
            if await self._claim(namespace):
                self._owned.add(namespace)
                logger.info("Namespace %s claimed by release %s", namespace, self.release)
                await self._on_gained(namespace)

    async def _hand_over(self, namespace: str) -> None:
        """Stop starting work on it, let the work under way finish, then free the claim."""
        self._owned.discard(namespace)
        self._on_lost(namespace)
        if self._busy[namespace] > 0:
            drained = self._drained.setdefault(namespace, asyncio.Event())
            await drained.wait()
        try:
            lease = await self._leases.read_namespaced_lease(claim_name(namespace), self._namespace)
            if lease.spec.holder_identity == self.release:
                await self._leases.delete_namespaced_lease(
                    claim_name(namespace),
                    self._namespace,
                    body=client.V1DeleteOptions(
                        preconditions=client.V1Preconditions(resource_version=lease.metadata.resource_version)
                    ),
                )
        except ApiException as error:
            if error.status not in (404, 409):
                self._owned.add(namespace)  # still claimed: tried again next round
                raise
        logger.info("Namespace %s handed over by release %s", namespace, self.release)

    async def _claim(self, namespace: str) -> bool:
        name = claim_name(namespace)
        try:
            lease = await self._leases.read_namespaced_lease(name, self._namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            return await self._write_claim(namespace, None)
        holder = lease.spec.holder_identity or ""
        if holder == self.release:
            return True  # this release's since before this leader: resumed as it is
        if holder and await self._leader_alive(holder):
            if self._waiting_on.get(namespace) != holder:
                self._waiting_on[namespace] = holder
                logger.warning(
                    "Namespace %s matches release %s's selector but release %s holds it; waiting until "
                    "it hands it over (if both selectors pick it, narrow one of them)",
                    namespace,
                    self.release,
                    holder,
                )
            return False
        return await self._write_claim(namespace, lease.metadata.resource_version)

    async def _write_claim(self, namespace: str, resource_version: str | None) -> bool:
        now = leases.micro_time()
        claim = leases.body(
            self._namespace,
            claim_name(namespace),
            resource_version=resource_version,
            holder=self.release,
            acquired=now,
            renewed=now,
            labels=CLAIM_LABEL,
        )
        if not await leases.write(self._leases, claim):
            return False  # another release was quicker; read again next round
        self._waiting_on.pop(namespace, None)
        return True

    async def _leader_alive(self, release: str) -> bool:
        """Whether ``release`` has a leader: its Lease is held and renewed within its duration."""
        try:
            lease = await self._leases.read_namespaced_lease(release, self._namespace)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        if not lease.spec.holder_identity:
            return False  # released: its last replica shut down
        record = f"{lease.spec.holder_identity}/{lease.spec.renew_time}"
        seen = self._seen_leaders.get(release)
        if seen is None or seen[0] != record:
            self._seen_leaders[release] = (record, time.monotonic())
            return True
        return time.monotonic() - seen[1] < (lease.spec.lease_duration_seconds or 15)
