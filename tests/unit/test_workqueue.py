"""The work queue, on a virtual clock (tests/virtualtime.py): its delays and backoffs are checked
exactly, however busy the machine is."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterable

import pytest
from kubernetes_asyncio.client import ApiException

from tests import virtualtime
from vaop.runtime import workqueue
from vaop.runtime.workqueue import WorkQueue


def _run(
    process: Callable[[str], Awaitable[float | None]],
    *,
    seconds: float,
    keys: Iterable[str] = ("a",),
    workers: int = 1,
) -> WorkQueue[str]:
    """The queue with these keys added, run for ``seconds`` of virtual time, then stopped."""

    async def main() -> WorkQueue[str]:
        queue: WorkQueue[str] = WorkQueue(process, workers=workers, name="test")
        queue.start()
        for key in keys:
            queue.add(key)
        await asyncio.sleep(seconds)
        await queue.stop()
        return queue

    return virtualtime.run(main())


def test_a_key_is_never_processed_twice_at_once_and_reruns_if_added_meanwhile() -> None:
    running: set[str] = set()
    runs: list[str] = []
    overlap = False
    release = asyncio.Event()

    async def process(key: str) -> float | None:
        nonlocal overlap
        overlap |= key in running
        running.add(key)
        runs.append(key)
        await release.wait()
        running.discard(key)
        return None

    async def main() -> None:
        queue: WorkQueue[str] = WorkQueue(process, workers=4, name="test")
        queue.start()
        queue.add("a")
        await asyncio.sleep(1)
        assert runs == ["a"]
        queue.add("a")  # while in progress: one more run afterwards
        queue.add("a")  # deduplicated
        await asyncio.sleep(1)
        assert runs == ["a"]  # not while the first is still running, on any of the other workers
        release.set()
        await asyncio.sleep(1)
        await queue.stop()

    virtualtime.run(main())
    assert runs == ["a", "a"]
    assert not overlap


def test_returned_delay_requeues_after_that_delay() -> None:
    times: list[float] = []

    async def process(key: str) -> float | None:
        times.append(asyncio.get_running_loop().time())
        return 30.0 if len(times) < 3 else None

    _run(process, seconds=3600)
    assert [round(b - a, 6) for a, b in itertools.pairwise(times)] == [30.0, 30.0]


def test_an_add_during_a_requeue_delay_runs_at_once_and_only_once() -> None:
    times: list[float] = []

    async def process(key: str) -> float | None:
        times.append(asyncio.get_running_loop().time())
        return 30.0 if len(times) == 1 else None

    async def main() -> None:
        queue: WorkQueue[str] = WorkQueue(process, workers=1, name="test")
        queue.start()
        queue.add("a")
        await asyncio.sleep(10)
        queue.add("a")  # an event: sooner than the requested 30 s, and the timer is dropped
        await asyncio.sleep(3600)
        await queue.stop()

    virtualtime.run(main())
    assert times == [0.0, 10.0]


def test_failures_back_off_exponentially_from_half_a_second_and_reset_on_success() -> None:
    times: list[float] = []

    async def process(key: str) -> float | None:
        times.append(asyncio.get_running_loop().time())
        if len(times) in (1, 2, 3, 4, 6):
            raise ApiException(status=503, reason="Service Unavailable")
        return 1000.0 if len(times) == 5 else None

    queue = _run(process, seconds=3600)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 7
    # 0.5, 1, 2, 4 s, each within its ±20 % jitter; then the success's own 1000 s; then a failure
    # starts again from the first step, since the success reset the count.
    for gap, expected in zip(gaps, (0.5, 1.0, 2.0, 4.0, 1000.0, 0.5), strict=True):
        assert expected * 0.8 <= gap <= expected * 1.2, (gap, expected)
    assert "a" not in queue._failures


def test_the_backoff_stops_growing_at_a_minute() -> None:
    times: list[float] = []

    async def process(key: str) -> float | None:
        times.append(asyncio.get_running_loop().time())
        raise ApiException(status=500, reason="Internal Server Error")

    _run(process, seconds=3600)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= workqueue.LAST_RETRY * 1.2
    assert all(gap >= workqueue.LAST_RETRY * 0.8 for gap in gaps[8:])  # 0.5 * 2**7 = 64 > 60


def test_a_429_waits_at_least_its_retry_after() -> None:
    error = ApiException(status=429, reason="Too Many Requests")
    error.headers = {"Retry-After": "7"}
    times: list[float] = []

    async def process(key: str) -> float | None:
        times.append(asyncio.get_running_loop().time())
        if len(times) == 1:
            raise error
        return None

    _run(process, seconds=60)
    assert times == [0.0, 7.0]  # not the 0.5 s first step of the backoff


def test_an_unavailable_apiserver_is_one_line_and_a_bug_has_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors = {"busy": ApiException(status=503, reason="Service Unavailable"), "bug": KeyError("spec")}

    async def process(key: str) -> float | None:
        raise errors[key]

    _run(process, seconds=0.1, keys=["busy", "bug"], workers=2)  # before the first retry
    records = {r.getMessage().split(":")[1].strip(): r for r in caplog.records}
    assert records["busy"].levelname == "WARNING" and records["busy"].exc_info is None
    assert "the apiserver answered 503 Service Unavailable; retrying in" in records["busy"].getMessage()
    assert records["bug"].levelname == "ERROR" and records["bug"].exc_info is not None
