"""The account-key envelope: the one place that defines how a wrapped account key looks at rest.

Two layers around a 32-byte account key:

- inner: the account key wrapped by the system key or the customer key (RSA-OAEP; the algorithm is
  recorded because some HSMs only do OAEP with SHA-1). Who wrapped it is recorded too, with the
  identity (ServiceAccount) it was wrapped as, so the envelope says which key opens it, and as whom.
- outer: AES-256-GCM with the platform's infrastructure key, over the inner ciphertext. The
  associated data binds the whole header (format version, the account's namespace, name and
  account ID, both layers' key identities) so an envelope copied to another account, or with an
  edited header, does not open.

Format 2 binds what a restore keeps: namespace, name and the account ID, a random identifier the
operator gives an account when it makes its key, kept in the envelope and in the account's
annotation. Format 1 bound the account's ``metadata.uid``, which no restore can bring back; it is
still read (its uid is that account's ID) so the operator can move every envelope to format 2.
The outer layer also names its key by an ID derived from the key itself, so an envelope sealed
by another cluster's infrastructure key says so instead of looking tampered with.

The serialised form is compact JSON (bytes as base64): readable with kubectl, versioned by ``v``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid
from dataclasses import asdict, dataclass, replace
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = 2
LEGACY_VERSION = 1  # bound to metadata.uid; read, never written
ACCOUNT_KEY_BYTES = 32
OUTER_ALGORITHM = "A256GCM"
_NONCE_BYTES = 12
_KCV_LABEL = b"videoanalyzer.io/key-check-value/v1"
_KEY_ID_LABEL = b"videoanalyzer.io/infrastructure-key-id/v1"


class EnvelopeError(Exception):
    """The envelope cannot be read or opened; the message says why, never with key material."""


class OuterKeyMismatch(EnvelopeError):
    """The envelope was sealed with another infrastructure key than this cluster's version of that
    name: another cluster's platform keys (a restore or a migration without them)."""


@dataclass(frozen=True)
class AccountIdentity:
    """The account an envelope belongs to: part of the associated data. ``id`` is the account ID
    (format 1: the account's metadata.uid, which served as its ID)."""

    namespace: str
    name: str
    id: str


@dataclass(frozen=True)
class InnerKeyRef:
    """Which key wrapped the account key, how, and as whom."""

    type: str  # "SystemKey" or "CustomerKey"
    provider: str
    key_vault: str  # KeyVault name, or "" for the system key
    key_name: str
    key_version: str
    algorithm: str  # e.g. RSA-OAEP-256, RSA-OAEP (SHA-1)
    # The ServiceAccount (in the account's namespace) it was wrapped as: it is opened as the same one,
    # whatever the account's spec names now. "" for the system key, and in format 1.
    identity: str = ""


@dataclass(frozen=True)
class Envelope:
    version: int
    account: AccountIdentity
    inner: InnerKeyRef
    outer_key_version: str
    outer_key_id: str  # "" in format 1
    nonce: bytes
    ciphertext: bytes  # AES-GCM(inner wrapped key) including the tag

    @property
    def algorithm(self) -> str:
        return f"{self.inner.algorithm}+{OUTER_ALGORITHM}"


def new_account_key() -> bytes:
    """32 bytes from the operating system's CSPRNG."""
    return os.urandom(ACCOUNT_KEY_BYTES)


def new_account_id() -> str:
    """A new account's ID: random, so no two accounts (in any cluster) share one."""
    return str(uuid.uuid4())


def key_check_value(account_key: bytes) -> str:
    """A public fingerprint of the account key: equal values mean the same key, and it reveals nothing."""
    return hmac.new(account_key, _KCV_LABEL, hashlib.sha256).hexdigest()[:16]


def outer_key_id(outer_key: bytes) -> str:
    """A public fingerprint of an infrastructure key: two clusters' keys tell apart by it."""
    return hmac.new(outer_key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def _header(
    envelope_version: int, account: AccountIdentity, inner: InnerKeyRef, outer: dict[str, str]
) -> Any:
    if envelope_version == LEGACY_VERSION:
        legacy_inner = {k: v for k, v in asdict(inner).items() if k != "identity"}
        legacy_account = {"uid": account.id, "namespace": account.namespace, "name": account.name}
        return {"v": envelope_version, "account": legacy_account, "inner": legacy_inner, "outer": outer}
    return {"v": envelope_version, "account": asdict(account), "inner": asdict(inner), "outer": outer}


def _outer(envelope_version: int, key_version: str, key_id: str) -> dict[str, str]:
    outer = {"alg": OUTER_ALGORITHM, "keyVersion": key_version}
    if envelope_version != LEGACY_VERSION:
        outer["keyID"] = key_id
    return outer


def _associated_data(envelope: Envelope) -> bytes:
    outer = _outer(envelope.version, envelope.outer_key_version, envelope.outer_key_id)
    header = _header(envelope.version, envelope.account, envelope.inner, outer)
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def seal(
    inner_wrapped: bytes,
    *,
    account: AccountIdentity,
    inner: InnerKeyRef,
    outer_key: bytes,
    outer_key_version: str,
) -> Envelope:
    """Add the outer layer around an already wrapped account key (always the current format)."""
    if len(outer_key) != 32:
        raise EnvelopeError("the infrastructure key must be 32 bytes (AES-256)")
    unsealed = Envelope(
        FORMAT_VERSION,
        account,
        inner,
        outer_key_version,
        outer_key_id(outer_key),
        os.urandom(_NONCE_BYTES),
        b"",
    )
    ciphertext = AESGCM(outer_key).encrypt(unsealed.nonce, inner_wrapped, _associated_data(unsealed))
    return replace(unsealed, ciphertext=ciphertext)


def unseal(envelope: Envelope, *, account: AccountIdentity, outer_key: bytes) -> bytes:
    """Remove the outer layer; fails unless the envelope is intact and belongs to ``account``."""
    if envelope.account != account:
        raise EnvelopeError(
            f"the envelope belongs to account {envelope.account.namespace}/{envelope.account.name} "
            f"(account ID {envelope.account.id}), not to {account.namespace}/{account.name} "
            f"(account ID {account.id})"
        )
    if envelope.outer_key_id and envelope.outer_key_id != outer_key_id(outer_key):
        raise OuterKeyMismatch(
            f"the envelope was sealed with infrastructure key version {envelope.outer_key_version} of ID "
            f"{envelope.outer_key_id}, but this cluster's version {envelope.outer_key_version} has ID "
            f"{outer_key_id(outer_key)}: it comes from a cluster with other platform keys"
        )
    try:
        return AESGCM(outer_key).decrypt(envelope.nonce, envelope.ciphertext, _associated_data(envelope))
    except InvalidTag:
        raise EnvelopeError(
            "the envelope does not open with infrastructure key version "
            f"{envelope.outer_key_version}: it was altered, or the key is not the one that sealed it"
        ) from None


def reseal(
    envelope: Envelope,
    *,
    account: AccountIdentity,
    outer_key: bytes,
    new_outer_key: bytes,
    new_outer_key_version: str,
    identity: str | None = None,
) -> Envelope:
    """The same inner wrap under a new outer layer in the current format (the account key itself is
    never seen): a format move, or another infrastructure key version. ``identity`` fills in the
    wrapping identity a format 1 envelope did not record."""
    inner_wrapped = unseal(envelope, account=account, outer_key=outer_key)
    inner = envelope.inner if identity is None else replace(envelope.inner, identity=identity)
    return seal(
        inner_wrapped,
        account=account,
        inner=inner,
        outer_key=new_outer_key,
        outer_key_version=new_outer_key_version,
    )


def encode(envelope: Envelope) -> bytes:
    if envelope.version != FORMAT_VERSION:
        raise EnvelopeError(
            f"only format {FORMAT_VERSION} is written; reseal a format {envelope.version} envelope"
        )
    document = {
        **_header(
            envelope.version,
            envelope.account,
            envelope.inner,
            _outer(envelope.version, envelope.outer_key_version, envelope.outer_key_id),
        ),
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
    if version not in (LEGACY_VERSION, FORMAT_VERSION):
        raise EnvelopeError(
            f"envelope format version {version!r} is not supported (this operator reads "
            f"{LEGACY_VERSION} and {FORMAT_VERSION})"
        )
    try:
        outer = document["outer"]
        if outer["alg"] != OUTER_ALGORITHM:
            raise EnvelopeError(f"outer algorithm {outer['alg']!r} is not supported")
        account = document["account"]
        inner_fields = dict(document["inner"])
        if version == LEGACY_VERSION:
            # Format 1 recorded no identity, and its associated data cannot vouch for one.
            if "identity" in inner_fields:
                raise EnvelopeError("a format 1 envelope cannot name an identity")
            identity = AccountIdentity(str(account["namespace"]), str(account["name"]), str(account["uid"]))
            key_id = ""
        else:
            identity = AccountIdentity(str(account["namespace"]), str(account["name"]), str(account["id"]))
            key_id = str(outer["keyID"])
        inner = InnerKeyRef(**{k: str(v) for k, v in inner_fields.items()})
        return Envelope(
            version=version,
            account=identity,
            inner=inner,
            outer_key_version=str(outer["keyVersion"]),
            outer_key_id=key_id,
            nonce=base64.b64decode(document["nonce"], validate=True),
            ciphertext=base64.b64decode(document["ciphertext"], validate=True),
        )
    except EnvelopeError:
        raise
    except (KeyError, TypeError, ValueError) as error:
        raise EnvelopeError(f"the envelope is malformed: {error.__class__.__name__} {error}") from None
