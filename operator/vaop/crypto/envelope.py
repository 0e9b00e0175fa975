"""The account-key envelope: the one place that defines how a wrapped account key looks at rest.

Two layers around a 32-byte account key:

- inner: the account key wrapped by the system key or the customer key (RSA-OAEP; the algorithm is
  recorded because some HSMs only do OAEP with SHA-1). Who wrapped it is recorded too, so the
  envelope says which key can open it.
- outer: AES-256-GCM with the platform's infrastructure key, over the inner ciphertext. The
  associated data binds the whole header (format version, account uid/namespace/name, both layers'
  key identities) so an envelope copied to another account, or with an edited header, does not open.

The serialised form is compact JSON (bytes as base64): readable with kubectl, and versioned by ``v``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = 1
ACCOUNT_KEY_BYTES = 32
OUTER_ALGORITHM = "A256GCM"
_NONCE_BYTES = 12
_KCV_LABEL = b"videoanalyzer.io/key-check-value/v1"


class EnvelopeError(Exception):
    """The envelope cannot be read or opened; the message says why, never with key material."""


@dataclass(frozen=True)
class AccountIdentity:
    """The account an envelope belongs to: part of the associated data."""

    uid: str
    namespace: str
    name: str


@dataclass(frozen=True)
class InnerKeyRef:
    """Which key wrapped the account key, and how."""

    type: str  # "SystemKey" or "CustomerKey"
    provider: str
    key_vault: str  # KeyVault name, or "" for the system key
    key_name: str
    key_version: str
    algorithm: str  # e.g. RSA-OAEP-256, RSA-OAEP (SHA-1)


@dataclass(frozen=True)
class Envelope:
    version: int
    account: AccountIdentity
    inner: InnerKeyRef
    outer_key_version: str
    nonce: bytes
    ciphertext: bytes  # AES-GCM(inner wrapped key) including the tag

    @property
    def algorithm(self) -> str:
        return f"{self.inner.algorithm}+{OUTER_ALGORITHM}"


def new_account_key() -> bytes:
    """32 bytes from the operating system's CSPRNG."""
    return os.urandom(ACCOUNT_KEY_BYTES)


def key_check_value(account_key: bytes) -> str:
    """A public fingerprint of the account key: equal values mean the same key, and it reveals nothing."""
    return hmac.new(account_key, _KCV_LABEL, hashlib.sha256).hexdigest()[:16]


def _associated_data(
    version: int, account: AccountIdentity, inner: InnerKeyRef, outer_key_version: str
) -> bytes:
    header = {
        "v": version,
        "account": asdict(account),
        "inner": asdict(inner),
        "outer": {"alg": OUTER_ALGORITHM, "keyVersion": outer_key_version},
    }
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def seal(
    inner_wrapped: bytes,
    *,
    account: AccountIdentity,
    inner: InnerKeyRef,
    outer_key: bytes,
    outer_key_version: str,
) -> Envelope:
    """Add the outer layer around an already wrapped account key."""
    if len(outer_key) != 32:
        raise EnvelopeError("the infrastructure key must be 32 bytes (AES-256)")
    nonce = os.urandom(_NONCE_BYTES)
    aad = _associated_data(FORMAT_VERSION, account, inner, outer_key_version)
    ciphertext = AESGCM(outer_key).encrypt(nonce, inner_wrapped, aad)
    return Envelope(FORMAT_VERSION, account, inner, outer_key_version, nonce, ciphertext)


def unseal(envelope: Envelope, *, account: AccountIdentity, outer_key: bytes) -> bytes:
    """Remove the outer layer; fails unless the envelope is intact and belongs to ``account``."""
    if envelope.account != account:
        raise EnvelopeError(
            f"the envelope belongs to account {envelope.account.namespace}/{envelope.account.name} "
            f"(uid {envelope.account.uid}), not to {account.namespace}/{account.name} (uid {account.uid})"
        )
    aad = _associated_data(envelope.version, account, envelope.inner, envelope.outer_key_version)
    try:
        return AESGCM(outer_key).decrypt(envelope.nonce, envelope.ciphertext, aad)
    except InvalidTag:
        raise EnvelopeError(
            "the envelope does not open with infrastructure key version "
            f"{envelope.outer_key_version}: it was altered, or the key is not the one that sealed it"
        ) from None


def encode(envelope: Envelope) -> bytes:
    document = {
        "v": envelope.version,
        "account": asdict(envelope.account),
        "inner": asdict(envelope.inner),
        "outer": {"alg": OUTER_ALGORITHM, "keyVersion": envelope.outer_key_version},
        "nonce": base64.b64encode(envelope.nonce).decode(),
        "ciphertext": base64.b64encode(envelope.ciphertext).decode(),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def decode(data: bytes) -> Envelope:
    try:
        document: dict[str, Any] = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise EnvelopeError("the envelope is not valid JSON") from None
    if not isinstance(document, dict):
        raise EnvelopeError("the envelope is not a JSON object")
    version = document.get("v")
    if version != FORMAT_VERSION:
        raise EnvelopeError(
            f"envelope format version {version!r} is not supported (this operator reads {FORMAT_VERSION})"
        )
    try:
        outer = document["outer"]
        if outer["alg"] != OUTER_ALGORITHM:
            raise EnvelopeError(f"outer algorithm {outer['alg']!r} is not supported")
        return Envelope(
            version=version,
            account=AccountIdentity(**document["account"]),
            inner=InnerKeyRef(**document["inner"]),
            outer_key_version=str(outer["keyVersion"]),
            nonce=base64.b64decode(document["nonce"], validate=True),
            ciphertext=base64.b64decode(document["ciphertext"], validate=True),
        )
    except EnvelopeError:
        raise
    except (KeyError, TypeError, ValueError) as error:
        raise EnvelopeError(f"the envelope is malformed: {error.__class__.__name__} {error}") from None
