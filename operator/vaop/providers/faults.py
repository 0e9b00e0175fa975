"""A test seam: make chosen vaults fail transiently, as an unreachable vault would.

Active only when ``VAOP_FAULT_FILE`` names a file; each line of it is ``<namespace>/<KeyVault>``,
and every call to those vaults raises TransientError while the line is there. Integration tests use
it to hold a fault for a chosen time (the kubernetes provider's "vault" is the apiserver itself,
which cannot be made unreachable for one identity alone). Production never sets the variable.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import base


def _failing(vault: str) -> bool:
    path = os.environ.get("VAOP_FAULT_FILE")
    if not path:
        return False
    try:
        return vault in Path(path).read_text().split()
    except OSError:
        return False


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
