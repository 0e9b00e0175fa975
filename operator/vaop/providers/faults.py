"""A test seam: make chosen vaults fail transiently, as an unreachable vault would.

Active only when ``VAOP_FAULT_FILE`` names a file; each line of it is ``<namespace>/<KeyVault>``,
and every call to those vaults raises TransientError while the line is there. Integration tests use
it to hold a fault for a chosen time (the kubernetes provider's "vault" is the apiserver itself,
which cannot be made unreachable for one identity alone). Production never sets the variable.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from . import base

_read: tuple[float, frozenset[str]] = (0.0, frozenset())  # (when, failing vaults) of the last reading
_FRESH_FOR = 0.2  # seconds a reading holds: tests wait seconds for a fault's effects


def _failing(vault: str) -> bool:
    global _read  # noqa: PLW0603 - the file's last reading, for every provider of the process
    path = os.environ.get("VAOP_FAULT_FILE")
    if not path:
        return False
    now = time.monotonic()
    if now - _read[0] > _FRESH_FOR:
        try:
            _read = (now, frozenset(Path(path).read_text().split()))
        except OSError:
            _read = (now, frozenset())
    return vault in _read[1]


class Faulty(base.KeyProvider):
    def __init__(self, inner: base.KeyProvider, *, vault: str) -> None:
        self._inner = inner
        self._vault = vault
        self.name = inner.name

    def _check(self) -> None:
        if _failing(self._vault):
            raise base.TransientError(
                f"vault {self._vault} did not answer (connection refused, injected fault)"
            )

    async def protection(self, key_name: str) -> base.VaultProperties:
        self._check()
        return await self._inner.protection(key_name)

    async def versions(self, key_name: str) -> list[base.KeyVersion]:
        self._check()
        return await self._inner.versions(key_name)

    async def wrap(self, key: base.KeyVersion, plaintext: bytes) -> base.Wrapped:
        self._check()
        return await self._inner.wrap(key, plaintext)

    async def unwrap(self, key_name: str, version: str, ciphertext: bytes, *, algorithm: str) -> bytes:
        self._check()
        return await self._inner.unwrap(key_name, version, ciphertext, algorithm=algorithm)

    async def rewrap(self, key: base.KeyVersion, ciphertext: bytes) -> base.Wrapped | None:
        self._check()
        return await self._inner.rewrap(key, ciphertext)

    async def close(self) -> None:
        await self._inner.close()


def wrap_if_enabled(provider: base.KeyProvider, *, vault: str) -> base.KeyProvider:
    return Faulty(provider, vault=vault) if os.environ.get("VAOP_FAULT_FILE") else provider
