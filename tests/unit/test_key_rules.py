"""Which keys may wrap account keys, and how a provider picks the version."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from vaop import models, providers
from vaop.crypto import rsa
from vaop.domain import keys as keys_domain
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


def test_oversized_pem_is_refused_before_parsing() -> None:
    # 16 kB of PEM: well past any RSA 4096 key, refused on its size with the limit in the message.
    pem = b"-----BEGIN PRIVATE KEY-----\n" + b"QUFB" * 4096 + b"\n-----END PRIVATE KEY-----\n"
    with pytest.raises(rsa.KeyMaterialError, match="more than the 8192"):
        rsa.load_private_key(pem)


def test_a_4096_bit_key_fits_under_the_pem_limit() -> None:
    assert len(rsa.generate(4096)) < rsa.MAX_PEM_BYTES
    assert "readable" in (rsa.unsupported_reason(rsa.KeyFacts(rsa.UNREADABLE, 0)) or "")


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


def _at(days: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)


async def test_an_expired_version_is_passed_over_for_one_that_wraps_and_kept_when_none_does() -> None:
    expired = dataclasses.replace(_v("2"), expires_on=_at(-1))
    assert (await FakeProvider([_v("1"), expired]).resolve("kek", None)).version == "1"
    # Every enabled version expired: the newest, which still opens what it wrapped.
    older = dataclasses.replace(_v("1"), expires_on=_at(-9))
    found = await FakeProvider([older, expired]).resolve("kek", None)
    assert found.version == "2" and found.expired()


def test_an_expiry_is_told_within_the_warning_time_only() -> None:
    soon = dataclasses.replace(_v("4"), expires_on=_at(10))
    assert "expires on" in (keys_domain.expiry_note(soon, warning=30 * 86400) or "")
    assert keys_domain.expiry_note(soon, warning=5 * 86400) is None
    gone = dataclasses.replace(_v("4"), expires_on=_at(-1))
    assert "still opens" in (keys_domain.expiry_note(gone, warning=0) or "")
    assert keys_domain.expiry_note(_v("4"), warning=30 * 86400) is None
    status = keys_domain.customer_key_status(gone, None, own_identity=False)
    assert status is not None and status["ready"].reason == "KeyExpired"


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


def test_only_pkcs11_modules_the_platform_listed_are_usable() -> None:
    def vault(module: str) -> models.KeyVaultSpec:
        block = {"module": module, "tokenLabel": "t", "pinSecretRef": {"name": "pin", "key": "pin"}}
        return models.KeyVaultSpec.parse({"region": "westeurope", "provider": {"pkcs11": block}})

    vetted = "/usr/lib/softhsm/libsofthsm2.so"
    try:
        providers.set_policy(providers.PlatformPolicy())
        assert "none (the pkcs11 provider is off)" in _message(providers.refusal(vault(vetted)))
        providers.set_policy(providers.PlatformPolicy(pkcs11_modules=frozenset({vetted})))
        assert providers.refusal(vault(vetted)) is None
        assert f"allowed: {vetted}" in _message(providers.refusal(vault("/tmp/evil.so")))
    finally:
        providers.set_policy(providers.PlatformPolicy())


def _message(refusal: base.Refusal | None) -> str:
    return "" if refusal is None else refusal.message
