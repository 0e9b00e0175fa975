"""A de-duplicating work queue with a fixed number of workers, like client-go's workqueue.

Any event (an account changed, its Secret vanished, its key rotated) just adds the account's key;
a key waiting in the queue is not added twice, and a key is never processed by two workers at
once (added while in progress, it runs once more afterwards). The processing function returns a
delay to run the key again later (backoff), or None.

A key whose processing raises is retried with a per-key exponential backoff (half a second,
doubling, at most a minute; at least what a 429's Retry-After asks), reset by its next success.
An apiserver that is busy, failing or away (429, 5xx, a broken connection) or a ``Transient`` is
logged in one line; anything else is a bug and logged with its traceback.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from .retry import transient

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
FIRST_RETRY, LAST_RETRY = 0.5, 60.0


def _retry_after(error: Exception) -> float:
    headers = getattr(error, "headers", None) or {}
    try:
        return float(headers.get("Retry-After", 0))
    except ValueError:
        return 0.0


class WorkQueue(Generic[K]):
    def __init__(self, process: Callable[[K], Awaitable[float | None]], *, workers: int, name: str) -> None:
        self._process = process
        self._workers = workers
        self._name = name
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._failures: dict[K, int] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, key: K) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        if key in self._timers or key in self._queued:
            return  # an earlier or immediate run is already due
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def __len__(self) -> int:
        return len(self._queued) + len(self._active)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"{self._name}-worker-{i}") for i in range(self._workers)
        ]

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._active.add(key)
            delay: float | None = None
            try:
                delay = await self._process(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                delay = self._backoff(key, error)
            finally:
                self._active.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            elif delay is not None:
                self.add_after(key, delay)

    def _backoff(self, key: K, error: Exception) -> float:
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        delay = min(LAST_RETRY, FIRST_RETRY * 2 ** (failures - 1)) * random.uniform(0.8, 1.2)  # noqa: S311
        delay = float(max(delay, _retry_after(error)))
        why = transient(error)
        if why is None:
            logger.exception("%s: %s: unexpected error; retrying in %.1fs", self._name, key, delay)
        else:
            logger.warning("%s: %s: %s; retrying in %.1fs", self._name, key, why, delay)
        return delay
