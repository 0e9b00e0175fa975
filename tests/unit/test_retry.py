"""The two loops every retry and periodic task runs on, on a virtual clock (tests/virtualtime.py):
when each attempt runs, what a failure tells, and when a loop ends."""

from __future__ import annotations

import asyncio
import logging

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from tests import virtualtime
from vaop.runtime import retry


def _now() -> float:
    return asyncio.get_running_loop().time()


def test_every_runs_at_once_then_each_period_and_after_a_failure_sooner() -> None:
    times: list[float] = []
    told: list[str | None] = []

    async def action() -> bool:
        times.append(_now())
        if len(times) == 2:
            raise ApiException(status=503, reason="Service Unavailable")
        return len(times) == 4

    async def main() -> None:
        await retry.every(60.0, action, doing="Refreshing", retry_after=5.0, problem=told.append)

    virtualtime.run(main())
    assert times == [0.0, 60.0, 65.0, 125.0]  # the failure at 60 is retried after 5 s, then 60 again
    assert told == [None, "Refreshing failed: the apiserver answered 503 Service Unavailable", None, None]


def test_every_can_wait_a_period_first_and_reads_a_changing_period_each_round() -> None:
    times: list[float] = []
    periods = iter([1.0, 2.0, 4.0])

    async def action() -> bool:
        times.append(_now())
        return len(times) == 2

    virtualtime.run(retry.every(lambda: next(periods), action, doing="Checking", at_once=False))
    assert times == [1.0, 3.0]


def test_every_is_woken_before_its_period() -> None:
    wake = asyncio.Event()
    times: list[float] = []

    async def action() -> bool:
        times.append(_now())
        return len(times) == 2

    async def main() -> None:
        loop = retry.every(300.0, action, doing="Claims", wake=wake, at_once=False)
        task = asyncio.create_task(loop)
        await asyncio.sleep(7.0)
        wake.set()
        await asyncio.sleep(0)
        await task

    virtualtime.run(main())
    assert times == [7.0, 307.0]  # woken at 7; the next round a whole period after it


def test_an_unexpected_error_is_logged_with_its_traceback_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts = 0

    async def action() -> bool:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise KeyError("spec")
        if attempts == 2:
            raise retry.Transient("the Lease changed underneath")
        return True

    with caplog.at_level(logging.WARNING, logger=retry.__name__):
        virtualtime.run(retry.every(10.0, action, doing="Upkeep"))
    assert attempts == 3
    unexpected, transient = caplog.records
    assert unexpected.exc_info is not None and "Upkeep failed; trying again in 10s" in unexpected.getMessage()
    assert transient.exc_info is None
    assert transient.getMessage() == "Upkeep failed (the Lease changed underneath); trying again in 10s"


def test_until_done_doubles_its_wait_up_to_the_most_and_returns_the_result() -> None:
    times: list[float] = []

    async def action() -> str:
        times.append(_now())
        if len(times) < 6:
            raise ConnectionError("refused")
        return "started"

    async def main() -> str:
        return await retry.until_done(action, doing="Starting", first=1.0, most=8.0)

    assert virtualtime.run(main()) == "started"
    assert times == [0.0, 1.0, 3.0, 7.0, 15.0, 23.0]


def test_cancelling_a_loop_stops_it_between_rounds() -> None:
    calls = 0

    async def action() -> None:
        nonlocal calls
        calls += 1

    async def main() -> None:
        task = asyncio.create_task(retry.every(1.0, action, doing="Logging"))
        await asyncio.sleep(10.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    virtualtime.run(main())
    assert calls == 11  # at 0, 1, ... 10
