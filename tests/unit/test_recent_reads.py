"""base.RecentReads: vault reads shared for a moment between reconciliations."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from vaop.providers import base


async def test_a_read_is_shared_within_the_window_and_only_under_its_key() -> None:
    reads: list[str] = []
    recent: base.RecentReads[str] = base.RecentReads(seconds=60)

    async def read(who: str) -> str:
        reads.append(who)
        return f"metadata as {who}"

    assert await recent.get(("kek", "alice"), lambda: read("alice")) == "metadata as alice"
    assert await recent.get(("kek", "alice"), lambda: read("alice")) == "metadata as alice"
    assert await recent.get(("kek", "bob"), lambda: read("bob")) == "metadata as bob"
    assert reads == ["alice", "bob"]


async def test_a_stale_read_is_read_again_and_stale_entries_are_forgotten() -> None:
    """Keys name vault tokens and identities that come and go: a stale read is dropped at the next
    sweep (at most one per window), not kept until some limit, so the size follows the keys in use."""
    reads = 0
    recent: base.RecentReads[int] = base.RecentReads(seconds=0.01, name="test-recent-reads")

    async def read() -> int:
        nonlocal reads
        reads += 1
        return reads

    assert await recent.get("a", read) == 1
    await asyncio.sleep(0.02)
    assert await recent.get("a", read) == 2
    for token in range(50):  # a new key every window, as OpenBao tokens are new every lease
        await asyncio.sleep(0.011)
        await recent.get(f"token-{token}", read)
    assert reads == 52
    assert len(recent) <= 2  # this window's read, and perhaps the last one's
    assert REGISTRY.get_sample_value("vaop_cache_entries", {"cache": "test-recent-reads"}) == len(recent)


async def test_a_refusal_is_shared_like_an_answer_a_transient_failure_is_not() -> None:
    recent: base.RecentReads[str] = base.RecentReads(seconds=60)
    asked = 0

    async def refused() -> str:
        nonlocal asked
        asked += 1
        raise base.AccessDenied("no")

    for _ in range(3):
        with pytest.raises(base.AccessDenied, match="no"):
            await recent.get("denied", refused)
    assert asked == 1

    async def flaky() -> str:
        nonlocal asked
        asked += 1
        raise base.TransientError("timeout")

    for _ in range(2):
        with pytest.raises(base.TransientError):
            await recent.get("flaky", flaky)
    assert asked == 3
    assert await recent.get("flaky", lambda: asyncio.sleep(0, result="answered")) == "answered"


async def test_reads_under_way_are_joined_and_a_cancelled_caller_leaves_the_read_to_the_others() -> None:
    recent: base.RecentReads[str] = base.RecentReads(seconds=60)
    asked = 0
    release = asyncio.Event()

    async def slow() -> str:
        nonlocal asked
        asked += 1
        await release.wait()
        return "metadata"

    callers = [asyncio.create_task(recent.get("k", slow)) for _ in range(5)]
    await asyncio.sleep(0.01)
    callers[0].cancel()
    release.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1:] == ["metadata"] * 4
    assert asked == 1
