"""The toggle set behind Kopf's "all indices filled" gate: the same answers as Kopf's own, at any size."""

from __future__ import annotations

import asyncio
import random

import pytest
from kopf._cogs.aiokits import aiotoggles

from vaop import kopfscale


@pytest.mark.parametrize("fn", [all, any])
async def test_same_state_as_kopfs_own_through_random_changes(fn: object) -> None:
    kopfs = kopfscale.CountingToggleSet.__bases__[0]  # Kopf's own, whether or not apply() ran
    ours, theirs = kopfscale.CountingToggleSet(fn), kopfs(fn)  # type: ignore[arg-type]
    pairs: list[tuple[aiotoggles.Toggle, aiotoggles.Toggle]] = []
    rng = random.Random(7)
    for _ in range(2000):
        action = rng.choice(["make", "drop", "turn"]) if pairs else "make"
        if action == "make":
            state = rng.random() < 0.5
            pairs.append((await ours.make_toggle(state), await theirs.make_toggle(state)))
        elif action == "drop":
            a, b = pairs.pop(rng.randrange(len(pairs)))
            await ours.drop_toggle(a)
            await theirs.drop_toggle(b)
        else:
            a, b = rng.choice(pairs)
            state = rng.random() < 0.5
            await a.turn_to(state)
            await b.turn_to(state)
        assert ours.is_on() == theirs.is_on()
        assert len(ours) == len(theirs)


async def test_every_waiter_wakes_when_the_last_object_is_indexed() -> None:
    """As at a restart: each object's toggle is made off, its worker drops it and waits for all."""
    indexed = kopfscale.CountingToggleSet(all)
    toggles = [await indexed.make_toggle(name=f"object {i}") for i in range(5000)]
    woken = 0

    async def worker(toggle: aiotoggles.Toggle) -> None:
        nonlocal woken
        await indexed.drop_toggle(toggle)
        await indexed.wait_for(True)
        woken += 1

    workers = [asyncio.create_task(worker(t)) for t in toggles[:-1]]
    await asyncio.sleep(0.1)
    assert woken == 0 and not indexed.is_on()  # one object still to be indexed holds them all
    workers.append(asyncio.create_task(worker(toggles[-1])))
    await asyncio.wait_for(asyncio.gather(*workers), timeout=30)
    assert woken == 5000 and indexed.is_on()


async def test_a_toggle_turned_wakes_whoever_waits_on_it() -> None:
    paused = kopfscale.CountingToggleSet(any)
    toggle = await paused.make_toggle(False)
    waiter = asyncio.create_task(toggle.wait_for(True))
    await asyncio.sleep(0.01)
    await toggle.turn_to(True)
    await asyncio.wait_for(waiter, timeout=1)
    assert paused.is_on()
    await paused.wait_for(True)


def test_kopf_makes_its_toggle_sets_from_the_patched_class() -> None:
    kopfscale.apply()
    from kopf._core.reactor import orchestration, running

    for module in (orchestration, running):  # where Kopf makes them: aiotoggles.ToggleSet(...)
        assert getattr(module, "aiotoggles").ToggleSet is kopfscale.CountingToggleSet  # noqa: B009
