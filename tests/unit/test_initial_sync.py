"""Readiness after a restart: the indices hold what existed at start, found with one listing."""

from __future__ import annotations

import asyncio
from typing import Any

from vaop.handlers import indexes


class FakeListing:
    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.calls = 0

    async def list_cluster_custom_object(self, *_: Any, limit: int, _continue: str | None) -> dict[str, Any]:
        self.calls += 1
        start = int(_continue or 0)
        page = self.names[start : start + limit]
        more = start + limit < len(self.names)
        return {
            "items": [{"metadata": {"namespace": "ns", "name": n}} for n in page],
            "metadata": {"continue": str(start + limit) if more else None},
        }


async def test_lists_once_then_waits_for_the_index_without_calling_the_api() -> None:
    indexed: set[tuple[str, str]] = set()
    sync = indexes.InitialSync(None, {"videoanalyzeraccounts": lambda key: key in indexed})
    listing = FakeListing([f"a{i}" for i in range(1200)])
    sync._custom = listing
    task = asyncio.create_task(sync.run())
    await asyncio.sleep(0.5)
    assert sync.problem() == "watch caches still filling: 1200 videoanalyzeraccounts not indexed yet"
    indexed.update(("ns", f"a{i}") for i in range(1200))
    await asyncio.wait_for(sync.synced.wait(), timeout=2)
    await task
    assert listing.calls == 3  # 1200 objects in pages of 500, listed once
    assert sync.problem() is None


async def test_an_object_deleted_before_it_was_indexed_does_not_hold_readiness_back() -> None:
    indexed = {("ns", "kept")}
    sync = indexes.InitialSync(None, {"videoanalyzeraccounts": lambda key: key in indexed}, relist_after=0.5)
    listing = FakeListing(["kept", "deleted"])
    sync._custom = listing
    task = asyncio.create_task(sync.run())
    await asyncio.sleep(0.3)
    assert not sync.synced.is_set()
    listing.names = ["kept"]  # deleted meanwhile: the watch never indexes it
    await asyncio.wait_for(sync.synced.wait(), timeout=3)
    await task
    assert listing.calls == 2
