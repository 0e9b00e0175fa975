from __future__ import annotations

import asyncio

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
