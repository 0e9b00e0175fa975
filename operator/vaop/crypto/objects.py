"""Sealing the account's data objects (AccessPolicy, Video) under a key derived from its account key.

Each object gets its own 256-bit key, HKDF-SHA256 of the account key with the object's ID (its
uid as the data API serves it, kept in its SealedObject) in the info, and is encrypted with
AES-256-GCM. The associated data binds the ciphertext to the format version, the object's group,
kind, namespace, name and ID, and its account's ID: a sealed object copied under another name, into
another namespace or onto another account does not open. Without the account key (revoked
customer key, deleted account) nothing opens: crypto-shredding.

Format 2 binds the account ID, which travels with a backup; format 1 bound the account's
``metadata.uid`` (read here as the account's ID, which it was) and is still read, so the
operator can move every object to format 2.
"""

from __future__ import annotations

import hmac
import json
import os
from dataclasses import dataclass

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = 2
LEGACY_VERSION = 1
ALGORITHM = "HKDF-SHA256/AES-256-GCM"
_NONCE_BYTES = 12
_NO_SALT = bytes(32)  # HKDF without a salt uses HashLen zero bytes
_INFO = {
    LEGACY_VERSION: b"videoanalyzer.io data object v1\x00",
    FORMAT_VERSION: b"videoanalyzer.io data object v2\x00",
}


class SealError(Exception):
    """A sealed object does not open: altered, moved, or not sealed with this account key."""


@dataclass(frozen=True)
class Binding:
    """What a sealed object belongs to; all of it is in the associated data."""

    group: str
    kind: str
    namespace: str
    name: str
    object_id: str
    account_id: str


@dataclass(frozen=True)
class Sealed:
    version: int
    nonce: bytes
    ciphertext: bytes


class ObjectKeys:
    """An account key ready to derive its objects' keys: HKDF-SHA256 (RFC 5869), no salt, 32 bytes.
    The extract step depends only on the account key, so it runs once here; each object's key is
    then one expand block, an HMAC copied from the one keyed here. Spelled out with ``hmac``
    because it runs for every object of every LIST, and cryptography's HKDF object costs ten times
    as much (the same bytes: tests/unit compares them). Hold it no longer than the account key."""

    __slots__ = ("_expand",)

    def __init__(self, account_key: bytes) -> None:
        if len(account_key) != 32:
            raise SealError("the account key must be 32 bytes")
        pseudorandom = hmac.digest(_NO_SALT, account_key, "sha256")
        self._expand = hmac.HMAC(pseudorandom, digestmod="sha256")

    def object_key(self, version: int, object_id: str) -> bytes:
        expand = self._expand.copy()
        expand.update(_INFO[version] + object_id.encode() + b"\x01")
        return expand.digest()


def _object_keys(account_key: bytes | ObjectKeys) -> ObjectKeys:
    return account_key if isinstance(account_key, ObjectKeys) else ObjectKeys(account_key)


def _associated_data(version: int, binding: Binding) -> bytes:
    # Spelled out, not dataclasses.asdict: this runs for every object of every LIST.
    if version == LEGACY_VERSION:
        fields = {
            "account_uid": binding.account_id,
            "group": binding.group,
            "kind": binding.kind,
            "name": binding.name,
            "namespace": binding.namespace,
            "uid": binding.object_id,
            "v": version,
        }
    else:
        fields = {
            "accountID": binding.account_id,
            "group": binding.group,
            "kind": binding.kind,
            "name": binding.name,
            "namespace": binding.namespace,
            "objectID": binding.object_id,
            "v": version,
        }
    written = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)  # a ninth of json.dumps's time
    if written.isascii() and b"\\" not in written and b"\x7f" not in written:
        return written  # nothing escaped: json.dumps's bytes (tests/unit compares them)
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def seal(plaintext: bytes, *, account_key: bytes | ObjectKeys, binding: Binding) -> Sealed:
    nonce = os.urandom(_NONCE_BYTES)
    aad = _associated_data(FORMAT_VERSION, binding)
    key = _object_keys(account_key).object_key(FORMAT_VERSION, binding.object_id)
    return Sealed(FORMAT_VERSION, nonce, AESGCM(key).encrypt(nonce, plaintext, aad))


def unseal(sealed: Sealed, *, account_key: bytes | ObjectKeys, binding: Binding) -> bytes:
    if sealed.version not in _INFO:
        raise SealError(
            f"sealed with format version {sealed.version}; "
            f"this operator reads {LEGACY_VERSION} and {FORMAT_VERSION}"
        )
    aad = _associated_data(sealed.version, binding)
    key = _object_keys(account_key).object_key(sealed.version, binding.object_id)
    try:
        return AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, aad)
    except InvalidTag:
        raise SealError(
            f"{binding.kind} {binding.namespace}/{binding.name} does not open with its account's key: "
            "it was altered or moved, or the account key is not the one that sealed it"
        ) from None
