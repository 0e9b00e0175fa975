"""The envelope opens only intact, for its own account, with its own keys; it never yields garbage."""

from __future__ import annotations

import dataclasses
import os

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
from hypothesis import given, settings
from hypothesis import strategies as st

from vaop.crypto import envelope, rsa

ACCOUNT = envelope.AccountIdentity("uid-1", "tenant-a", "studio")
INNER = envelope.InnerKeyRef("CustomerKey", "kubernetes", "vault", "kek", "3", rsa.RSA_OAEP_256)
OUTER = os.urandom(32)
_PRIVATE = rsa_keys.generate_private_key(public_exponent=65537, key_size=2048)


def _seal(account_key: bytes, *, account: envelope.AccountIdentity = ACCOUNT) -> envelope.Envelope:
    wrapped = rsa.wrap(_PRIVATE.public_key(), account_key)
    return envelope.seal(wrapped, account=account, inner=INNER, outer_key=OUTER, outer_key_version="1")


def _open(
    sealed: envelope.Envelope, *, account: envelope.AccountIdentity = ACCOUNT, outer: bytes = OUTER
) -> bytes:
    inner = envelope.unseal(sealed, account=account, outer_key=outer)
    return rsa.unwrap(_PRIVATE, inner, algorithm=sealed.inner.algorithm)


_KEY = envelope.new_account_key()
_SEALED = _seal(_KEY)


def test_round_trip_through_the_serialised_form() -> None:
    key = envelope.new_account_key()
    sealed = envelope.decode(envelope.encode(_seal(key)))
    assert _open(sealed) == key
    assert sealed.algorithm == "RSA-OAEP-256+A256GCM"


def test_account_keys_are_random_and_32_bytes() -> None:
    keys = {envelope.new_account_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(len(k) == 32 for k in keys)


def test_key_check_value_is_stable_and_distinguishes_keys() -> None:
    key = envelope.new_account_key()
    assert envelope.key_check_value(key) == envelope.key_check_value(bytes(key))
    assert envelope.key_check_value(key) != envelope.key_check_value(envelope.new_account_key())
    assert key.hex()[:16] not in envelope.key_check_value(key)


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_of_the_serialised_envelope_is_refused(position: int, bit: int) -> None:
    encoded = bytearray(envelope.encode(_SEALED))
    encoded[position % len(encoded)] ^= 1 << bit
    try:
        sealed = envelope.decode(bytes(encoded))
        result = _open(sealed)
    except (envelope.EnvelopeError, rsa.KeyMaterialError):
        return
    # A flip inside base64 padding or JSON whitespace can decode to the very same envelope: then the
    # key must be exactly the original, never something else.
    assert result == _KEY


@settings(max_examples=50, deadline=None)
@given(field=st.sampled_from(["uid", "namespace", "name"]), value=st.text(min_size=1, max_size=20))
def test_envelope_moved_to_another_account_does_not_open(field: str, value: str) -> None:
    other = dataclasses.replace(ACCOUNT, **{field: value})
    if other == ACCOUNT:
        return
    with pytest.raises(envelope.EnvelopeError, match="belongs to account"):
        _open(_SEALED, account=other)
    # Even an envelope whose header is rewritten to the other account fails authentication.
    forged = dataclasses.replace(_SEALED, account=other)
    with pytest.raises(envelope.EnvelopeError, match="altered"):
        _open(forged, account=other)


def test_edited_inner_header_is_refused() -> None:
    forged = dataclasses.replace(_SEALED, inner=dataclasses.replace(INNER, key_version="4"))
    with pytest.raises(envelope.EnvelopeError, match="altered"):
        _open(forged)


def test_wrong_infrastructure_key_is_refused() -> None:
    with pytest.raises(envelope.EnvelopeError, match="does not open with infrastructure key version 1"):
        _open(_SEALED, outer=os.urandom(32))


def test_wrong_inner_key_is_refused() -> None:
    other = rsa_keys.generate_private_key(public_exponent=65537, key_size=2048)
    inner = envelope.unseal(_SEALED, account=ACCOUNT, outer_key=OUTER)
    with pytest.raises(rsa.KeyMaterialError, match="does not open"):
        rsa.unwrap(other, inner, algorithm=rsa.RSA_OAEP_256)


def test_unknown_format_version_is_refused_with_the_versions() -> None:
    encoded = envelope.encode(_SEALED).replace(b'"v":1', b'"v":2')
    with pytest.raises(envelope.EnvelopeError, match="format version 2 is not supported"):
        envelope.decode(encoded)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_decode_into_garbage(data: bytes) -> None:
    with pytest.raises(envelope.EnvelopeError):
        envelope.decode(data)


def test_sha1_oaep_is_recorded_and_round_trips() -> None:
    key = envelope.new_account_key()
    wrapped = rsa.wrap(_PRIVATE.public_key(), key, algorithm=rsa.RSA_OAEP_SHA1)
    inner_ref = dataclasses.replace(INNER, algorithm=rsa.RSA_OAEP_SHA1)
    sealed = envelope.seal(wrapped, account=ACCOUNT, inner=inner_ref, outer_key=OUTER, outer_key_version="1")
    decoded = envelope.decode(envelope.encode(sealed))
    assert decoded.algorithm == "RSA-OAEP+A256GCM"
    assert _open(decoded) == key
