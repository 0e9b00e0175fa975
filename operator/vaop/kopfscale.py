"""Kopf's gate "all indices filled", made to scale with the number of objects (applied before it runs).

While an operator with indices starts, Kopf (1.45) gives every listed object a toggle in one
``ToggleSet`` and lets every object's worker wait until the whole set is on. Kopf's ``ToggleSet``
re-reads every toggle to tell its state, and wakes every waiter whenever a toggle is added or
dropped. With N objects at start that is N waiters, each reading N toggles, for each of 2N changes.
Measured with bench/restart.py: a restart with 20,000 accounts indexed about 5 objects a second
and was still not ready after 10 minutes, 70 % of its time in waking waiters.

``CountingToggleSet`` keeps the number of its toggles that are on, so its state costs nothing to
tell, and wakes waiters only when that state changes (and, as before, when a toggle is turned, for
whoever waits on that one toggle). Same interface, same meaning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from kopf._cogs.aiokits import aiotoggles


class _CountedToggle(aiotoggles.Toggle):
    def __init__(self, state: bool, *, name: str | None, owner: CountingToggleSet) -> None:
        super().__init__(state, name=name, condition=owner._condition)
        self._owner = owner

    async def turn_to(self, __state: bool) -> None:
        async with self._condition:
            if bool(__state) != self._state and self in self._owner._toggles:
                self._owner._on += 1 if __state else -1
            self._state = bool(__state)
            self._condition.notify_all()


class CountingToggleSet(aiotoggles.ToggleSet):
    def __init__(self, fn: Callable[[Iterable[bool]], bool]) -> None:
        super().__init__(fn)
        self._on = 0  # toggles of this set that are on

    def is_on(self) -> bool:
        if self._fn is all:
            return self._on == len(self._toggles)
        if self._fn is any:
            return self._on > 0
        return super().is_on()

    async def make_toggle(self, __val: bool = False, *, name: str | None = None) -> aiotoggles.Toggle:
        toggle = _CountedToggle(__val, name=name, owner=self)
        async with self._condition:
            before = self.is_on()
            self._toggles.add(toggle)
            self._on += toggle.is_on()
            self._notify_if_changed(before)
        return toggle

    async def drop_toggle(self, toggle: aiotoggles.Toggle) -> None:
        await self.drop_toggles([toggle])

    async def drop_toggles(self, toggles: Iterable[aiotoggles.Toggle]) -> None:
        async with self._condition:
            before = self.is_on()
            for toggle in toggles:
                if toggle in self._toggles:
                    self._toggles.discard(toggle)
                    self._on -= toggle.is_on()
            self._notify_if_changed(before)

    def _notify_if_changed(self, before: bool) -> None:
        if self.is_on() != before:
            self._condition.notify_all()


def apply() -> None:
    """Kopf makes its toggle sets as ``aiotoggles.ToggleSet(...)`` when it starts: this one instead."""
    aiotoggles.ToggleSet = CountingToggleSet  # type: ignore[misc]
