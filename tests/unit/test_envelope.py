"""The envelope opens only intact, for its own account, with its own keys; it never yields garbage."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
from hypothesis import given, settings
from hypothesis import strategies as st

from vaop.crypto import envelope, rsa

ACCOUNT = envelope.AccountIdentity("tenant-a", "studio", "account-id-1")
INNER = envelope.InnerKeyRef(
    "CustomerKey", "kubernetes", "vault", "kek", "3", rsa.RSA_OAEP_256, identity="studio-identity"
)
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
@given(field=st.sampled_from(["id", "namespace", "name"]), value=st.text(min_size=1, max_size=20))
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


@pytest.mark.parametrize(("field", "value"), [("key_version", "4"), ("identity", "another-identity")])
def test_edited_inner_header_is_refused(field: str, value: str) -> None:
    forged = dataclasses.replace(_SEALED, inner=dataclasses.replace(INNER, **{field: value}))
    with pytest.raises(envelope.EnvelopeError, match="altered"):
        _open(forged)


def test_another_clusters_infrastructure_key_is_named_not_called_tampering() -> None:
    with pytest.raises(envelope.OuterKeyMismatch, match="comes from a cluster with other platform keys"):
        _open(_SEALED, outer=os.urandom(32))


def test_a_forged_key_id_does_not_help_a_wrong_key() -> None:
    other = os.urandom(32)
    forged = dataclasses.replace(_SEALED, outer_key_id=envelope.outer_key_id(other))
    with pytest.raises(envelope.EnvelopeError, match="altered"):
        _open(forged, outer=other)


def test_wrong_inner_key_is_refused() -> None:
    other = rsa_keys.generate_private_key(public_exponent=65537, key_size=2048)
    inner = envelope.unseal(_SEALED, account=ACCOUNT, outer_key=OUTER)
    with pytest.raises(rsa.KeyMaterialError, match="does not open"):
        rsa.unwrap(other, inner, algorithm=rsa.RSA_OAEP_256)


def test_unknown_format_version_is_refused_with_the_versions() -> None:
    encoded = envelope.encode(_SEALED).replace(b'"v":2', b'"v":3')
    with pytest.raises(envelope.EnvelopeError, match="format version 3 is not supported"):
        envelope.decode(encoded)


def test_account_ids_are_random() -> None:
    assert len({envelope.new_account_id() for _ in range(100)}) == 100


# ---- format 1, as the operator wrote it before account IDs (recorded, tests/fixtures/formats) ----

V1 = json.loads((Path(__file__).parents[1] / "fixtures" / "formats" / "v1.json").read_text())
V1_ACCOUNT = envelope.AccountIdentity(V1["account"]["namespace"], V1["account"]["name"], V1["account"]["uid"])
V1_OUTER = base64.b64decode(V1["infrastructureKey"])
V1_SYSTEM_KEY = rsa.load_private_key(V1["systemKeyPem"].encode())


def _open_v1(sealed: envelope.Envelope, account: envelope.AccountIdentity = V1_ACCOUNT) -> bytes:
    inner = envelope.unseal(sealed, account=account, outer_key=V1_OUTER)
    assert isinstance(V1_SYSTEM_KEY, rsa_keys.RSAPrivateKey)
    return rsa.unwrap(V1_SYSTEM_KEY, inner, algorithm=sealed.inner.algorithm)


def test_a_format_1_envelope_opens_with_its_uid_as_the_account_id() -> None:
    sealed = envelope.decode(V1["envelope"].encode())
    assert (sealed.version, sealed.account, sealed.outer_key_id, sealed.inner.identity) == (
        1,
        V1_ACCOUNT,
        "",
        "",
    )
    assert envelope.key_check_value(_open_v1(sealed)) == V1["accountKeyCheckValue"]


def test_a_format_1_envelope_is_resealed_as_format_2_with_the_same_key_and_its_identity_named() -> None:
    sealed = envelope.decode(V1["envelope"].encode())
    new_outer = os.urandom(32)
    moved = envelope.reseal(
        sealed,
        account=V1_ACCOUNT,
        outer_key=V1_OUTER,
        new_outer_key=new_outer,
        new_outer_key_version="2",
        identity="",
    )
    decoded = envelope.decode(envelope.encode(moved))
    assert (decoded.version, decoded.account, decoded.outer_key_version) == (2, V1_ACCOUNT, "2")
    assert decoded.outer_key_id == envelope.outer_key_id(new_outer)
    inner = envelope.unseal(decoded, account=V1_ACCOUNT, outer_key=new_outer)
    assert isinstance(V1_SYSTEM_KEY, rsa_keys.RSAPrivateKey)
    key = rsa.unwrap(V1_SYSTEM_KEY, inner, algorithm=decoded.inner.algorithm)
    assert envelope.key_check_value(key) == V1["accountKeyCheckValue"]


def test_a_format_1_envelope_cannot_be_made_to_name_an_identity() -> None:
    document = json.loads(V1["envelope"])
    document["inner"]["identity"] = "someone-else"
    with pytest.raises(envelope.EnvelopeError, match="cannot name an identity"):
        envelope.decode(json.dumps(document).encode())


def test_only_the_current_format_is_written() -> None:
    with pytest.raises(envelope.EnvelopeError, match="only format 2 is written"):
        envelope.encode(envelope.decode(V1["envelope"].encode()))


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
