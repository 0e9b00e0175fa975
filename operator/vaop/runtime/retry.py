"""What is worth retrying, said in one line, and the one retry loop for "do this until it works".

A busy, failing or absent apiserver (429, 5xx, 409 on a write that raced, a broken connection) or
a ``Transient`` is one log line and a retry; anything else is a bug, logged with its traceback.
"""

from __future__ import annotations

import asyncio
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
            problem(f"{doing} failed: {describe(error)}")
            if transient(error) is None:
                logger.exception("%s failed; retrying in %.0fs", doing, delay)
            else:
                logger.warning("%s failed (%s); retrying in %.0fs", doing, describe(error), delay)
            if after_failure is not None:
                await after_failure()
            await asyncio.sleep(delay)
            delay = min(delay * 2, most)
        else:
            problem(None)
            return result
