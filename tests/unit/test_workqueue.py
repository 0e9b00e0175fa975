from __future__ import annotations

import asyncio
import itertools

import pytest
from kubernetes_asyncio.client import ApiException

from vaop.reconcilers import workqueue
from vaop.reconcilers.workqueue import WorkQueue


async def test_a_key_is_never_processed_twice_at_once_and_reruns_if_added_meanwhile() -> None:
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

    queue: WorkQueue[str] = WorkQueue(process, workers=4, name="test")
    queue.start()
    queue.add("a")
    await asyncio.sleep(0.01)
    queue.add("a")  # while in progress: one more run afterwards
    queue.add("a")  # deduplicated
    release.set()
    await asyncio.sleep(0.05)
    await queue.stop()
    assert runs == ["a", "a"]
    assert not overlap


async def test_returned_delay_requeues_later() -> None:
    runs = 0

    async def process(key: str) -> float | None:
        nonlocal runs
        runs += 1
        return 0.02 if runs < 3 else None

    queue: WorkQueue[str] = WorkQueue(process, workers=1, name="test")
    queue.start()
    queue.add("a")
    await asyncio.sleep(0.2)
    await queue.stop()
    assert runs == 3


async def test_failures_back_off_exponentially_and_reset_on_success(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workqueue, "FIRST_RETRY", 0.01)
    times: list[float] = []

    async def process(key: str) -> float | None:
        times.append(asyncio.get_running_loop().time())
        if len(times) <= 4:
            raise ApiException(status=503, reason="Service Unavailable")
        return None

    queue: WorkQueue[str] = WorkQueue(process, workers=1, name="test")
    queue.start()
    queue.add("a")
    await asyncio.sleep(0.5)
    await queue.stop()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 5
    # 0.01, 0.02, 0.04, 0.08 seconds, each within its ±20 % jitter
    for gap, expected in zip(gaps, (0.01, 0.02, 0.04, 0.08), strict=True):
        assert expected * 0.8 <= gap < expected * 1.2 + 0.02
    assert "a" not in queue._failures


async def test_a_429_waits_at_least_its_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workqueue, "FIRST_RETRY", 0.01)
    error = ApiException(status=429, reason="Too Many Requests")
    error.headers = {"Retry-After": "0.3"}
    times: list[float] = []

    async def process(key: str) -> float | None:
        times.append(asyncio.get_running_loop().time())
        if len(times) == 1:
            raise error
        return None

    queue: WorkQueue[str] = WorkQueue(process, workers=1, name="test")
    queue.start()
    queue.add("a")
    await asyncio.sleep(0.5)
    await queue.stop()
    assert len(times) == 2
    assert times[1] - times[0] >= 0.3


async def test_an_unavailable_apiserver_is_one_line_and_a_bug_has_its_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(workqueue, "FIRST_RETRY", 10)
    errors = {"busy": ApiException(status=503, reason="Service Unavailable"), "bug": KeyError("spec")}

    async def process(key: str) -> float | None:
        raise errors[key]

    queue: WorkQueue[str] = WorkQueue(process, workers=2, name="test")
    queue.start()
    queue.add("busy")
    queue.add("bug")
    await asyncio.sleep(0.05)
    await queue.stop()
    records = {r.getMessage().split(":")[1].strip(): r for r in caplog.records}
    assert records["busy"].levelname == "WARNING" and records["busy"].exc_info is None
    assert "the apiserver answered 503 Service Unavailable; retrying in" in records["busy"].getMessage()
    assert records["bug"].levelname == "ERROR" and records["bug"].exc_info is not None
