"""A sealed data object opens only intact, under its own name, namespace, uid and account."""

from __future__ import annotations

import dataclasses
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaop.crypto import objects

KEY = os.urandom(32)
BINDING = objects.Binding("data.videoanalyzer.io", "Video", "tenant-a", "lobby", "uid-1", "account-uid")
DOCUMENT = b'{"spec": {"title": "Lobby camera"}}'


def test_round_trip_and_no_plaintext_in_the_ciphertext() -> None:
    sealed = objects.seal(DOCUMENT, account_key=KEY, binding=BINDING)
    assert b"Lobby" not in sealed.ciphertext
    assert objects.unseal(sealed, account_key=KEY, binding=BINDING) == DOCUMENT


@pytest.mark.parametrize("field", ["group", "kind", "namespace", "name", "uid", "account_uid"])
def test_a_moved_object_does_not_open(field: str) -> None:
    sealed = objects.seal(DOCUMENT, account_key=KEY, binding=BINDING)
    moved = dataclasses.replace(BINDING, **{field: "other"})
    with pytest.raises(objects.SealError, match="does not open"):
        objects.unseal(sealed, account_key=KEY, binding=moved)


def test_another_account_key_does_not_open_it() -> None:
    sealed = objects.seal(DOCUMENT, account_key=KEY, binding=BINDING)
    with pytest.raises(objects.SealError):
        objects.unseal(sealed, account_key=os.urandom(32), binding=BINDING)


def test_an_unknown_format_version_is_refused_not_guessed() -> None:
    sealed = dataclasses.replace(objects.seal(DOCUMENT, account_key=KEY, binding=BINDING), version=2)
    with pytest.raises(objects.SealError, match="format version 2"):
        objects.unseal(sealed, account_key=KEY, binding=BINDING)


@settings(max_examples=100, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_is_refused(position: int, bit: int) -> None:
    sealed = objects.seal(DOCUMENT, account_key=KEY, binding=BINDING)
    data = bytearray(sealed.nonce + sealed.ciphertext)
    data[position % len(data)] ^= 1 << bit
    tampered = objects.Sealed(sealed.version, bytes(data[:12]), bytes(data[12:]))
    with pytest.raises(objects.SealError):
        objects.unseal(tampered, account_key=KEY, binding=BINDING)
