"""Leader election on a real Lease (coordination.k8s.io/v1) in the real apiserver, with short durations."""

from __future__ import annotations

import asyncio
import datetime
import time

from kubernetes_asyncio import client as aclient

from tests import helpers
from vaop.runtime import leadership

DURATION, DEADLINE, RETRY = 2.0, 1.5, 0.2


class Replica:
    """An elector with a record of when it started and stopped leading."""

    def __init__(self, api: aclient.ApiClient, namespace: str, name: str) -> None:
        self.started: list[float] = []
        self.stopped: list[float] = []
        self.elector = leadership.LeaderElector(
            api,
            leadership.LeaseSettings(
                namespace=namespace,
                name="election",
                identity=name,
                lease_duration=DURATION,
                renew_deadline=DEADLINE,
                retry_period=RETRY,
            ),
            on_started=self._on_started,
            on_stopped=self._on_stopped,
        )
        self.task: asyncio.Task[None] | None = None

    async def _on_started(self) -> None:
        self.started.append(time.monotonic())

    async def _on_stopped(self) -> None:
        self.stopped.append(time.monotonic())

    def run(self) -> Replica:
        self.task = asyncio.create_task(self.elector.run())
        return self

    async def crash(self) -> None:
        """Stop without releasing, as a killed process does."""
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def _leader_and_follower(api: aclient.ApiClient, namespace: str) -> tuple[Replica, Replica]:
    a = Replica(api, namespace, "a").run()
    await helpers.until(lambda: a.elector.leading, within=5)
    b = Replica(api, namespace, "b").run()
    await asyncio.sleep(1.0)
    assert not b.elector.leading and b.elector.holder == "a"
    return a, b


async def test_one_leader_and_a_released_lease_is_taken_at_once(
    api: aclient.ApiClient, namespace: str
) -> None:
    a, b = await _leader_and_follower(api, namespace)

    await a.elector.release()
    await a.crash()
    handover = await helpers.until(lambda: b.elector.leading, within=5)
    assert handover < DURATION  # not waiting for the Lease to expire
    assert a.stopped and not a.elector.leading
    lease = await aclient.CoordinationV1Api(api).read_namespaced_lease("election", namespace)
    assert lease.spec.holder_identity == "b" and lease.spec.lease_transitions == 1
    await b.elector.release()
    await b.crash()


async def test_a_crashed_leader_is_replaced_after_the_lease_expires(
    api: aclient.ApiClient, namespace: str
) -> None:
    a, b = await _leader_and_follower(api, namespace)
    await a.crash()
    crashed = time.monotonic()
    await helpers.until(lambda: b.elector.leading, within=DURATION + 3)
    waited = time.monotonic() - crashed
    assert DURATION - 2 * RETRY <= waited <= DURATION + 1.5, waited
    await b.elector.release()
    await b.crash()


async def test_a_leader_that_loses_the_lease_stops_at_once(api: aclient.ApiClient, namespace: str) -> None:
    a = Replica(api, namespace, "a").run()
    await helpers.until(lambda: a.elector.leading, within=5)
    leases = aclient.CoordinationV1Api(api)

    async def intrude() -> None:
        """Someone else holds the Lease and keeps renewing it (as after a network partition)."""
        lease = await leases.read_namespaced_lease("election", namespace)
        lease.spec.holder_identity = "intruder"
        lease.spec.renew_time = datetime.datetime.now(datetime.UTC)
        await leases.replace_namespaced_lease("election", namespace, lease)

    await intrude()
    noticed = await helpers.until(lambda: not a.elector.leading, within=2)
    assert noticed <= 2 * RETRY + 0.5
    assert len(a.stopped) == 1
    for _ in range(10):  # while the intruder renews, "a" never leads again
        await intrude()
        await asyncio.sleep(RETRY)
        assert not a.elector.leading
    await a.crash()


async def test_readiness_follows_the_apiserver_answering(api: aclient.ApiClient, namespace: str) -> None:
    a = Replica(api, namespace, "a")
    assert a.elector.problem() == "no answer from the apiserver yet"
    a.run()
    await helpers.until(lambda: a.elector.problem() is None, within=5)
    await a.crash()
    a.elector.last_contact -= 2 * DURATION + 1  # as if the apiserver had been silent that long
    assert "no answer from the apiserver for" in str(a.elector.problem())
