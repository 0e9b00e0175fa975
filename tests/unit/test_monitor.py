"""The key monitor: sweeps on time whatever watches do, and enqueues only accounts that must change."""

from __future__ import annotations

import asyncio

from vaop.reconcilers import monitor
from vaop.wrapping import KeyProblem

PAIR = monitor.Pair("t", "studio-identity", "key", "westeurope")
OTHER = monitor.Pair("t", "other-identity", "key", "westeurope")


def _view(pair: monitor.Pair, **changes: object) -> monitor.AccountView:
    fields: dict[str, object] = {
        "pair": pair,
        "pinned": False,
        "wrapped_version": "1",
        "state": "Active",
        "reason": "Ready",
        "degraded": False,
    }
    fields.update(changes)
    return monitor.AccountView(**fields)  # type: ignore[arg-type]


async def test_a_stream_of_watch_triggers_does_not_postpone_the_sweep() -> None:
    checked: list[monitor.Pair] = []

    async def check(pair: monitor.Pair) -> monitor.CheckResult:
        checked.append(pair)
        return monitor.CheckResult("1", None)

    watcher = monitor.KeyMonitor(check=check, enqueue=lambda _: None, interval=0.2, grace=10)
    watcher.observed(("t", "a"), _view(PAIR))
    watcher.observed(("t", "b"), _view(OTHER))
    task = asyncio.create_task(watcher.run())
    for _ in range(30):  # OTHER's key changes every 20 ms, far more often than the interval
        watcher.check_soon([OTHER])
        await asyncio.sleep(0.02)
    task.cancel()
    assert PAIR in checked  # the sweep still ran


def test_only_accounts_that_must_change_are_enqueued() -> None:
    watcher = monitor.KeyMonitor(check=lambda _: None, enqueue=lambda _: None, interval=1, grace=10)  # type: ignore[arg-type,return-value]
    watcher.observed(("t", "current"), _view(PAIR))
    watcher.observed(("t", "old"), _view(PAIR, wrapped_version="0"))
    watcher.observed(("t", "pinned"), _view(PAIR, wrapped_version="0", pinned=True))
    watcher.observed(("t", "locked"), _view(PAIR, state="KeyInaccessible", reason="AccessDenied"))
    ok = monitor.CheckResult("1", None)
    assert sorted(watcher.to_enqueue(PAIR, ok)) == [("t", "locked"), ("t", "old")]
    denied = monitor.CheckResult(None, KeyProblem("AccessDenied", "no"))
    assert sorted(watcher.to_enqueue(PAIR, denied)) == [("t", "current"), ("t", "old"), ("t", "pinned")]
    flaky = monitor.CheckResult(None, KeyProblem("VaultUnreachable", "timeout", definitive=False))
    assert len(watcher.to_enqueue(PAIR, flaky)) == 4  # each shows VaultDegraded once
