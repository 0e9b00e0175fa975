"""A provider wrapper that times every vault call into vaop_provider_call_duration_seconds."""

from __future__ import annotations

from .. import metrics
from . import base


class Instrumented(base.KeyProvider):
    def __init__(self, inner: base.KeyProvider) -> None:
        self._inner = inner
        self.name = inner.name

    async def protection(self, key_name: str) -> base.VaultProperties:
        with metrics.provider_call(self.name, "properties"):
            return await self._inner.protection(key_name)

    async def versions(self, key_name: str) -> list[base.KeyVersion]:
        with metrics.provider_call(self.name, "versions"):
            return await self._inner.versions(key_name)

    async def wrap(self, key: base.KeyVersion, plaintext: bytes) -> base.Wrapped:
        with metrics.provider_call(self.name, "wrap"):
            return await self._inner.wrap(key, plaintext)

    async def unwrap(self, key_name: str, version: str, ciphertext: bytes, *, algorithm: str) -> bytes:
        with metrics.provider_call(self.name, "unwrap"):
            return await self._inner.unwrap(key_name, version, ciphertext, algorithm=algorithm)

    async def rewrap(self, key: base.KeyVersion, ciphertext: bytes) -> base.Wrapped | None:
        with metrics.provider_call(self.name, "rewrap"):
            return await self._inner.rewrap(key, ciphertext)

    async def close(self) -> None:
        await self._inner.close()
