"""What is worth retrying, said in one line, and the two loops every retry and periodic task runs on:
``until_done`` (do this until it works) and ``every`` (do this every so often, for as long as it lives).

A busy, failing or absent apiserver (429, 5xx, 409 on a write that raced, a broken connection) or
a ``Transient`` is one log line and a retry; anything else is a bug, logged with its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Transient(Exception):
    """Something changed underneath or is briefly unavailable: do it again soon."""


def unavailable(error: Exception) -> str | None:
    """What went wrong, in a line, when the apiserver is busy, failing or away (429, 5xx, 409 on a
    write that raced, a broken connection): worth a retry. None for anything else."""
    if isinstance(error, ApiException) and (error.status in (0, 409, 429) or error.status >= 500):
        return f"the apiserver answered {error.status} {error.reason}"
    if isinstance(error, aiohttp.ClientError | asyncio.TimeoutError | ConnectionError):
        return f"the apiserver could not be reached ({error.__class__.__name__})"
    return None


def transient(error: Exception) -> str | None:
    """What went wrong, in a line, if it is worth just retrying; None for an unexpected error."""
    if isinstance(error, Transient):
        return str(error)
    return unavailable(error)


def describe(error: Exception) -> str:
    """A line for a log or a readiness problem: the transient cause, or the error's type and text."""
    return transient(error) or f"{error.__class__.__name__}: {error}"


async def until_done(
    action: Callable[[], Awaitable[T]],
    *,
    doing: str,
    first: float = 1.0,
    most: float = 30.0,
    problem: Callable[[str | None], None] = lambda _: None,
    after_failure: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """``action`` again and again until it succeeds, waiting ``first`` seconds, doubling up to ``most``.
    Each failure is logged and told to ``problem`` (``None`` once it succeeds); ``after_failure``
    undoes what a failed attempt left half done."""
    delay = first
    while True:
        try:
            result = await action()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            _failed(doing, error, delay, problem)
            if after_failure is not None:
                await after_failure()
            await asyncio.sleep(delay)
            delay = min(delay * 2, most)
        else:
            problem(None)
            return result


async def every(
    period: float | Callable[[], float],
    action: Callable[[], Awaitable[bool | None]],
    *,
    doing: str,
    retry_after: float | Callable[[], float] | None = None,
    problem: Callable[[str | None], None] = lambda _: None,
    wake: asyncio.Event | None = None,
    at_once: bool = True,
) -> None:
    """The one periodic loop: ``action`` (now, or after a first period when not ``at_once``) and
    again every ``period`` seconds (a callable: read again each round, for jitter or a period that
    depends on what was found), or as soon as ``wake`` is set. A failure is logged and told to
    ``problem`` as in ``until_done``, and the next round comes after ``retry_after`` (default: the
    period). The loop ends when ``action`` returns True: nothing left to do."""
    delay = 0.0 if at_once else _seconds(period)
    while True:
        if wake is None:
            await asyncio.sleep(delay)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=delay)
            wake.clear()
        try:
            done = await action()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            delay = _seconds(period if retry_after is None else retry_after)
            _failed(doing, error, delay, problem)
            continue
        problem(None)
        if done:
            return
        delay = _seconds(period)


def _seconds(period: float | Callable[[], float]) -> float:
    return period() if callable(period) else period


def _failed(doing: str, error: Exception, delay: float, problem: Callable[[str | None], None]) -> None:
    """One log line for a transient failure, a traceback for anything else; the problem told."""
    problem(f"{doing} failed: {describe(error)}")
    if transient(error) is None:
        logger.exception("%s failed; trying again in %.0fs", doing, delay)
    else:
        logger.warning("%s failed (%s); trying again in %.0fs", doing, describe(error), delay)
