"""The platform keys' root, without a cluster: configuration errors, how versions are named and
counted, when a rotation is due, and the stored form of a wrapped infrastructure key."""

from __future__ import annotations

import datetime

import pytest
from pydantic import ValidationError

from vaop import config, platformkeys, platformroot
from vaop.crypto import envelope
from vaop.providers import base


def test_a_root_outside_kubernetes_needs_its_settings_and_says_which() -> None:
    with pytest.raises(
        ValidationError, match="VAOP_PLATFORM_PKCS11_MODULE, VAOP_PLATFORM_PKCS11_TOKEN_LABEL"
    ):
        config.OperatorConfig(platform_keys_provider="pkcs11")
    with pytest.raises(ValidationError, match="needs VAOP_PLATFORM_OPENBAO_ADDRESS"):
        config.OperatorConfig(platform_keys_provider="openbao")
    options = config.OperatorConfig(
        platform_keys_provider="pkcs11",
        platform_pkcs11_module="/usr/lib/softhsm/libsofthsm2.so",
        platform_pkcs11_token_label="platform",
        platform_pkcs11_pin="1234",
    )
    root = platformroot.from_config(options, api=None)  # pkcs11 needs no API
    assert (root.kind, root.key_name, root.wraps_infrastructure) == ("pkcs11", "vaop-system-key", True)
    assert "1234" not in repr(options)  # the PIN never shows in a log of the settings
    missing = root.unusable(base.KeyNotFound("no private key labelled 'vaop-system-key'"))
    assert "is not in token 'platform'" in missing and "pkcs11-tool" in missing


def _sealed(provider: str, version: str, outer: str, kind: str = "SystemKey") -> envelope.Envelope:
    inner = envelope.InnerKeyRef(
        type=kind, provider=provider, key_vault="", key_name="k", key_version=version, algorithm=""
    )
    return envelope.Envelope(
        version=2,
        account=envelope.AccountIdentity("ns", "a", "id"),
        inner=inner,
        outer_key_version=outer,
        outer_key_id="",
        nonce=b"",
        ciphertext=b"",
    )


def test_system_key_versions_of_a_root_moved_from_are_named_apart() -> None:
    used = platformkeys.usage(
        [_sealed("kubernetes", "1", "1"), _sealed("pkcs11", "1", "2"), _sealed("pkcs11", "1", "2")],
        root="pkcs11",
    )
    assert used == {
        (platformkeys.INFRASTRUCTURE, "1"): 1,
        (platformkeys.INFRASTRUCTURE, "2"): 2,
        (platformkeys.SYSTEM, "kubernetes/1"): 1,
        (platformkeys.SYSTEM, "1"): 2,
    }
    assert platformkeys.usage([_sealed("kubernetes", "3", "1")]) == {
        (platformkeys.INFRASTRUCTURE, "1"): 1,
        (platformkeys.SYSTEM, "3"): 1,
    }


def _keys(**changes: object) -> platformkeys.PlatformKeys:
    root = platformroot.Root("pkcs11", "k", None, "token", "make it")  # type: ignore[arg-type]
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=400)
    fields: dict[str, object] = {
        "namespace": "vaop-system",
        "root": root,
        "infrastructure": {"1": b"k" * 32},
        "infrastructure_version": "1",
        "infrastructure_since": long_ago,
        "system_since": None,
        **changes,
    }
    return platformkeys.PlatformKeys(**fields)  # type: ignore[arg-type]


def test_a_rotation_is_due_on_the_cryptoperiod_or_when_asked_and_a_vaults_key_rotates_there() -> None:
    assert platformkeys.due(_keys(), infrastructure_days=90, system_days=365) == [platformkeys.INFRASTRUCTURE]
    fresh = datetime.datetime.now(datetime.UTC)
    assert platformkeys.due(_keys(infrastructure_since=fresh), infrastructure_days=90, system_days=365) == []
    asked = _keys(infrastructure_since=fresh, rotation_requested=True)
    assert platformkeys.due(asked, infrastructure_days=0, system_days=0) == [platformkeys.INFRASTRUCTURE]


def test_a_wrapped_infrastructure_key_is_told_from_a_key_in_the_clear() -> None:
    record = platformroot.WrappedKey("pkcs11", "k", "2", "RSA-OAEP", b"\x01" * 384)
    assert platformroot.WrappedKey.decode(record.encode()) == record
    assert platformroot.WrappedKey.decode(b"\x00" * 32) is None
    with pytest.raises(platformroot.PlatformKeyMissing, match="neither a key nor a wrapped key"):
        platformroot.WrappedKey.decode(b"not a record")
