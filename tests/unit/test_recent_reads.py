"""base.RecentReads: vault reads shared for a moment between reconciliations."""

from __future__ import annotations

import asyncio

import pytest

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
    reads = 0
    recent: base.RecentReads[int] = base.RecentReads(seconds=0.01, limit=2)

    async def read() -> int:
        nonlocal reads
        reads += 1
        return reads

    assert await recent.get("a", read) == 1
    await asyncio.sleep(0.02)
    assert await recent.get("a", read) == 2
    await asyncio.sleep(0.02)
    await recent.get("b", read)
    await recent.get("c", read)  # over the limit: the stale "a" and "b" go
    assert await recent.get("c", read) == 4
    assert len(recent._reads) <= 2


async def test_a_failed_read_is_not_remembered() -> None:
    recent: base.RecentReads[str] = base.RecentReads(seconds=60)

    async def refused() -> str:
        raise base.AccessDenied("no")

    for _ in range(2):
        with pytest.raises(base.AccessDenied):
            await recent.get("k", refused)
    assert await recent.get("k", lambda: asyncio.sleep(0, result="granted")) == "granted"
