"""Which keys may wrap account keys, and how a provider picks the version."""

from __future__ import annotations

import pytest

from vaop.crypto import rsa
from vaop.providers import base


@pytest.mark.parametrize(
    ("facts", "allowed"),
    [
        (rsa.KeyFacts("RSA", 2048), True),
        (rsa.KeyFacts("RSA", 3072), True),
        (rsa.KeyFacts("RSA-HSM", 4096), True),
        (rsa.KeyFacts("RSA", 1024), False),
        (rsa.KeyFacts("RSA", 8192), False),
        (rsa.KeyFacts("EC", 256), False),
        (rsa.KeyFacts("oct", 256), False),
    ],
)
def test_only_rsa_2048_3072_4096(facts: rsa.KeyFacts, allowed: bool) -> None:
    assert (rsa.unsupported_reason(facts) is None) is allowed


class FakeProvider(base.KeyProvider):
    name = "fake"

    def __init__(self, versions: list[base.KeyVersion]) -> None:
        self._versions = versions

    async def protection(self, key_name: str) -> base.VaultProperties:
        return base.VaultProperties(soft_delete=True, purge_protection=True)

    async def versions(self, key_name: str) -> list[base.KeyVersion]:
        return self._versions

    async def wrap(self, key: base.KeyVersion, plaintext: bytes) -> base.Wrapped:
        raise AssertionError("not used")

    async def unwrap(self, key_name: str, version: str, ciphertext: bytes, *, algorithm: str) -> bytes:
        raise AssertionError("not used")


RSA_2048 = rsa.KeyFacts("RSA", 2048)


def _v(version: str, *, enabled: bool = True, facts: rsa.KeyFacts = RSA_2048) -> base.KeyVersion:
    return base.KeyVersion("kek", version, facts, enabled)


async def test_latest_enabled_version_is_chosen() -> None:
    provider = FakeProvider([_v("1"), _v("2"), _v("3", enabled=False)])
    assert (await provider.resolve("kek", None)).version == "2"


async def test_pinned_disabled_version_is_refused() -> None:
    provider = FakeProvider([_v("1", enabled=False), _v("2")])
    with pytest.raises(base.KeyDisabled, match="version 1"):
        await provider.resolve("kek", "1")


async def test_pinned_missing_version_is_not_found() -> None:
    with pytest.raises(base.KeyVersionNotFound):
        await FakeProvider([_v("1")]).resolve("kek", "7")


async def test_unsupported_latest_version_is_refused_with_the_reason() -> None:
    provider = FakeProvider([_v("1"), _v("2", facts=rsa.KeyFacts("EC", 256))])
    with pytest.raises(base.KeyUnsupported, match="EC key"):
        await provider.resolve("kek", None)
