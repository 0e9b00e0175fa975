"""Providers shared by the reconciliations of a few seconds (``wrapping.Session``), so a rotation of
many accounts on one key reaches the vault's listing (or login) once, not once per account; each
closed once the last session holding it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from . import kubeclient
from .providers import base

PoolKey = tuple[str, str, kubeclient.ServiceAccountRef, str]  # namespace, vault, identity, vault spec


class ProviderPool:
    """Providers shared by the sessions of the last ``max_age`` seconds, per (vault, identity).

    A provider keeps what it read (the kubernetes provider its key listing), so sharing it shares
    that answer, good or bad (a refusal too): never for longer than ``max_age``, and never past a
    newer one. A *fresh* session (the key monitor's check) always connects anew and leaves its
    provider here, so a reconciliation never acts on an answer older than the last check's; a session
    that meets a vault that does not answer (a transient failure) removes the entry. A provider out
    of the pool is closed once the last session holding it is done (its calls may still be running),
    so what providers hold does not grow with how often the vaults are checked.
    """

    def __init__(self, max_age: float = 5.0) -> None:
        self.max_age = max_age
        self._entries: dict[PoolKey, tuple[base.KeyProvider, float]] = {}
        self._holders: dict[int, int] = {}  # id(provider): the sessions holding it
        self._retired: dict[int, base.KeyProvider] = {}  # out of the pool, still held
        self._closing: set[asyncio.Task[None]] = set()

    def get(self, key: PoolKey) -> base.KeyProvider | None:
        """The provider for ``key`` if it is recent, held for the caller until it calls ``release``."""
        entry = self._entries.get(key)
        if entry is None or time.monotonic() >= entry[1]:
            self.evict(key)
            return None
        self._hold(entry[0])
        return entry[0]

    def put(self, key: PoolKey, provider: base.KeyProvider) -> None:
        """Share ``provider`` (held for the caller until it calls ``release``)."""
        now = time.monotonic()
        for old in [k for k, (_, expires) in self._entries.items() if k == key or expires <= now]:
            self.evict(old)  # and those no one asked for again (an identity gone, a vault changed)
        self._entries[key] = (provider, now + self.max_age)
        self._hold(provider)

    def release(self, provider: base.KeyProvider) -> None:
        """A session is done with ``provider``: closed now if it has left the pool and no one holds it."""
        held = self._holders.get(id(provider), 0) - 1
        if held > 0:
            self._holders[id(provider)] = held
            return
        self._holders.pop(id(provider), None)
        if self._retired.pop(id(provider), None) is not None:
            self._close_soon(provider)

    def evict(self, key: PoolKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        provider = entry[0]
        if id(provider) in self._holders:
            self._retired[id(provider)] = provider  # closed by the last release
        else:
            self._close_soon(provider)

    def _hold(self, provider: base.KeyProvider) -> None:
        self._holders[id(provider)] = self._holders.get(id(provider), 0) + 1

    def _close_soon(self, provider: base.KeyProvider) -> None:
        task = asyncio.get_running_loop().create_task(close_quietly(provider))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        entries, self._entries = self._entries, {}
        retired, self._retired = self._retired, {}
        for provider in [provider for provider, _ in entries.values()] + list(retired.values()):
            await close_quietly(provider)
        await asyncio.gather(*self._closing)


async def close_quietly(provider: base.KeyProvider) -> None:
    with contextlib.suppress(Exception):
        await provider.close()
