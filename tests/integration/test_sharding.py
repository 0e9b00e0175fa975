"""Namespace claims between two releases (sharding.py) on the real apiserver: each release with its
own leader Lease, as the chart runs them, and short durations."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes_asyncio import client as aclient

from tests import helpers
from vaop import sharding
from vaop.runtime import leadership

DURATION, DEADLINE, RETRY = 2.0, 1.5, 0.2
SHARD = "videoanalyzer.io/shard"


class Release:
    """A release's leader (a real LeaderElector on its own Lease) and its namespace claims."""

    def __init__(self, api: aclient.ApiClient, namespace: str, name: str, selector: str) -> None:
        self.gained: list[str] = []
        self.lost: list[str] = []
        self.elector = leadership.LeaderElector(
            api,
            leadership.LeaseSettings(
                namespace=namespace,
                name=name,
                identity=f"{name}-pod",
                lease_duration=DURATION,
                renew_deadline=DEADLINE,
                retry_period=RETRY,
            ),
            on_started=self._nothing,
            on_stopped=self._nothing,
        )
        self.claims = sharding.NamespaceClaims(
            api,
            namespace=namespace,
            release=name,
            selector=selector,
            on_gained=self._gained,
            on_lost=self.lost.append,
            retry_period=RETRY,
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def _nothing(self) -> None:
        return None

    async def _gained(self, namespace: str) -> None:
        self.gained.append(namespace)

    async def start(self) -> Release:
        self._tasks.append(asyncio.create_task(self.elector.run()))
        await helpers.until(lambda: self.elector.leading, within=5)
        await self.claims.start()
        self._tasks.append(asyncio.create_task(self.claims.run()))
        return self

    async def crash(self) -> None:
        """Gone without a word: no Lease released, no claim handed over (a killed process)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.claims.stop()


@pytest.fixture
def tenant_namespace(admin: client.ApiClient) -> Iterator[str]:
    """A namespace no release selects yet (labelled by each test)."""
    name = f"shard-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(admin)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def _label(admin: client.ApiClient, namespace: str, value: str) -> None:
    client.CoreV1Api(admin).patch_namespace(namespace, {"metadata": {"labels": {SHARD: value}}})


def _never_both(a: Release, b: Release, namespace: str, overlaps: list[float]) -> asyncio.Task[None]:
    """Samples, every few milliseconds, whether both releases own ``namespace`` at once."""

    async def sample() -> None:
        while True:
            if a.claims.owns(namespace) and b.claims.owns(namespace):
                overlaps.append(time.monotonic())
            await asyncio.sleep(0.005)

    return asyncio.create_task(sample())


async def test_a_relabelled_namespace_moves_once_the_work_under_way_is_done(
    api: aclient.ApiClient, admin: client.ApiClient, namespace: str, tenant_namespace: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    a = await Release(api, namespace, "release-a", f"{SHARD}=a-{tag}").start()
    b = await Release(api, namespace, "release-b", f"{SHARD}=b-{tag}").start()
    overlaps: list[float] = []
    sampler = _never_both(a, b, tenant_namespace, overlaps)
    leases = aclient.CoordinationV1Api(api)
    try:
        _label(admin, tenant_namespace, f"a-{tag}")
        await helpers.until(lambda: a.claims.owns(tenant_namespace), within=5)
        assert a.gained == [tenant_namespace] and not b.claims.owns(tenant_namespace)
        claim = await leases.read_namespaced_lease(sharding.claim_name(tenant_namespace), namespace)
        assert claim.spec.holder_identity == "release-a"

        assert a.claims.enter(tenant_namespace)  # a reconciliation under way on release a
        _label(admin, tenant_namespace, f"b-{tag}")
        await helpers.until(lambda: a.lost == [tenant_namespace], within=5)
        assert not a.claims.enter(tenant_namespace)  # no new work starts on it
        await asyncio.sleep(2.0)
        assert not b.claims.owns(tenant_namespace), "taken while release a was still writing"

        a.claims.leave(tenant_namespace)  # that reconciliation ends
        await helpers.until(lambda: b.claims.owns(tenant_namespace), within=5)
        assert b.gained == [tenant_namespace]
        claim = await leases.read_namespaced_lease(sharding.claim_name(tenant_namespace), namespace)
        assert claim.spec.holder_identity == "release-b"
        assert overlaps == []
    finally:
        sampler.cancel()
        await a.crash()
        await b.crash()


async def test_overlapping_selectors_leave_a_namespace_with_its_holder_until_that_release_is_gone(
    api: aclient.ApiClient, admin: client.ApiClient, namespace: str, tenant_namespace: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    _label(admin, tenant_namespace, f"both-{tag}")
    a = await Release(api, namespace, "release-a", f"{SHARD} in (a-{tag},both-{tag})").start()
    assert a.claims.owns(tenant_namespace)  # claimed before the leader's first pass
    b = await Release(api, namespace, "release-b", f"{SHARD} in (b-{tag},both-{tag})").start()
    overlaps: list[float] = []
    sampler = _never_both(a, b, tenant_namespace, overlaps)
    try:
        await asyncio.sleep(2 * DURATION)  # release a renews its Lease: b keeps off
        assert not b.claims.owns(tenant_namespace)

        await a.crash()
        crashed = time.monotonic()
        await helpers.until(lambda: b.claims.owns(tenant_namespace), within=DURATION + 5)
        # Taken only once release a's Lease went unrenewed for a whole duration, as b saw it.
        assert time.monotonic() - crashed >= DURATION - RETRY
        assert overlaps == []
    finally:
        sampler.cancel()
        await a.crash()
        await b.crash()
