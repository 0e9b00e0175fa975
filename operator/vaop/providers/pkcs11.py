"""The ``pkcs11`` provider: RSA keys inside an HSM token; the private key never leaves it.

The token is found by label; its user PIN comes from a Secret in the KeyVault's namespace, read *as
the account's identity*, so the access grant is RBAC on that Secret. A key's versions are private
key objects sharing the key's label (CKA_LABEL) with distinct ids (CKA_ID "1", "2", ...); a version
whose CKA_DECRYPT is false is disabled. Wrapping uses RSA-OAEP with SHA-256 where the token has it
and SHA-1 otherwise (SoftHSM2 2.6 supports only SHA-1): the envelope records which. A key that
cannot be destroyed (CKA_DESTROYABLE false) counts as soft-delete and purge protected.

PKCS#11 calls block, so each runs in a worker thread, one at a time per module (login is per process).
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pkcs11
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as pkcs11_errors

from ..crypto import rsa
from . import base

T = TypeVar("T")
_OAEP = {
    rsa.RSA_OAEP_256: (Mechanism.SHA256, MGF.SHA256, None),
    rsa.RSA_OAEP_SHA1: (Mechanism.SHA_1, MGF.SHA1, None),
}


@functools.lru_cache(maxsize=8)
def _library(module: str) -> pkcs11.lib:
    return pkcs11.lib(module)


@functools.lru_cache(maxsize=8)
def _module_lock(module: str) -> threading.Lock:
    """PKCS#11 login state is per process and token, shared by all its sessions (a second C_Login
    fails, closing one session logs all out), and slot look-ups are not safe from many threads:
    one caller at a time per module."""
    return threading.Lock()


# Tokens already found, by (module, label): a session opens on the known slot instead of
# enumerating every slot again. Guarded by the module's lock.
_tokens: dict[tuple[str, str], Any] = {}
_LOOKUP_ATTEMPTS = 5
# What a slot that moved or went away answers; the token is then looked up afresh, once.
_STALE_SLOT = (
    pkcs11_errors.GeneralError,
    pkcs11_errors.SlotIDInvalid,
    pkcs11_errors.TokenNotPresent,
    pkcs11_errors.DeviceRemoved,
)


def find_token(module: str, label: str) -> Any:
    """The token labelled ``label``, looked up afresh.

    SoftHSM2's file store answers CKR_GENERAL_ERROR to a slot look-up while another process is
    touching its token files (measured: over half of all look-ups under a busy neighbour), and a
    process's first look-up then may not list the token at all (2 of 25 fresh processes beside one
    making checks: `NoSuchToken`), so a failed look-up is retried a few times, milliseconds apart.
    """
    for attempt in range(1, _LOOKUP_ATTEMPTS + 1):
        try:
            return _library(module).get_token(token_label=label)
        except (pkcs11_errors.GeneralError, pkcs11_errors.NoSuchToken):
            if attempt == _LOOKUP_ATTEMPTS:
                raise
            time.sleep(0.01 * attempt)
    raise AssertionError("unreachable")


def _found(module: str, label: str) -> Any:
    """The token, or the provider error saying why there is none. Called under the module's lock."""
    try:
        return find_token(module, label)
    except (pkcs11_errors.NoSuchToken, pkcs11_errors.MultipleTokensReturned):
        raise base.VaultNotFound(
            f"PKCS#11 module {module} has no single token labelled {label!r}; check tokenLabel "
            "(softhsm2-util --show-slots or pkcs11-tool --list-tokens lists the labels)"
        ) from None
    except (OSError, RuntimeError, pkcs11_errors.PKCS11Error) as error:
        raise base.TransientError(f"PKCS#11 module {module} failed: {error.__class__.__name__}") from None


async def probe(module: str, token_label: str) -> None:
    """Find the token without logging in (no PIN is needed to find a token by its label)."""

    def find() -> None:
        with _module_lock(module):
            _found(module, token_label)

    await asyncio.to_thread(find)


class Pkcs11KeyProvider(base.KeyProvider):
    name = "pkcs11"

    def __init__(self, *, module: str, token_label: str, pin: str, identity: str) -> None:
        self._module = module
        self._token_label = token_label
        self._pin = pin
        self._identity = identity

    async def protection(self, key_name: str) -> base.VaultProperties:
        def read(session: Any) -> bool:
            keys = list(
                session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: key_name})
            )
            if not keys:
                raise base.KeyNotFound(
                    f"token {self._token_label!r} holds no private key labelled {key_name!r}"
                )
            return all(not _attribute(key, Attribute.DESTROYABLE, True) for key in keys)

        protected = await self._run(read)
        return base.VaultProperties(soft_delete=protected, purge_protection=protected)

    async def versions(self, key_name: str) -> list[base.KeyVersion]:
        def read(session: Any) -> list[base.KeyVersion]:
            found = []
            for key in session.get_objects(
                {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: key_name}
            ):
                version = bytes(key.id or b"").decode(errors="replace")
                if not version.isdigit():
                    continue
                if key.key_type == KeyType.RSA:
                    facts = rsa.KeyFacts("RSA-HSM", int(key.key_length))
                elif key.key_type == KeyType.EC:
                    facts = rsa.KeyFacts("EC", 0)
                else:
                    facts = rsa.KeyFacts(str(key.key_type), 0)
                # CKA_DECRYPT false disables an RSA version; other key types cannot decrypt at all and are
                # refused for their type, which says more than "disabled".
                enabled = facts.key_type != "RSA-HSM" or bool(_attribute(key, Attribute.DECRYPT, True))
                found.append(base.KeyVersion(key_name, version, facts, enabled))
            if not found:
                raise base.KeyNotFound(
                    f"token {self._token_label!r} holds no private key labelled {key_name!r}"
                )
            return sorted(found, key=lambda v: int(v.version))

        return await self._run(read)

    async def wrap(self, key: base.KeyVersion, plaintext: bytes) -> base.Wrapped:
        def encrypt(session: Any) -> base.Wrapped:
            public = session.get_key(
                object_class=ObjectClass.PUBLIC_KEY, label=key.name, id=key.version.encode()
            )
            for algorithm in (rsa.RSA_OAEP_256, rsa.RSA_OAEP_SHA1):
                try:
                    ciphertext = public.encrypt(
                        plaintext, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=_OAEP[algorithm]
                    )
                    return base.Wrapped(bytes(ciphertext), algorithm, key.version)
                except (pkcs11_errors.ArgumentsBad, pkcs11_errors.MechanismParamInvalid):
                    continue  # the token lacks OAEP with this hash: try the next
            raise base.KeyUnsupported(
                f"token {self._token_label!r} supports RSA-OAEP with neither SHA-256 nor SHA-1"
            )

        return await self._run(encrypt)

    async def unwrap(self, key_name: str, version: str, ciphertext: bytes, *, algorithm: str) -> bytes:
        def decrypt(session: Any) -> bytes:
            private = session.get_key(
                object_class=ObjectClass.PRIVATE_KEY, label=key_name, id=version.encode()
            )
            try:
                return bytes(
                    private.decrypt(
                        ciphertext, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=_OAEP[algorithm]
                    )
                )
            except (pkcs11_errors.EncryptedDataInvalid, pkcs11_errors.EncryptedDataLenRange):
                raise base.UnwrapFailed(
                    f"key {key_name!r} version {version} does not open this account key"
                ) from None
            except (pkcs11_errors.GeneralError, pkcs11_errors.DeviceError):
                raise  # the module failing, not this key: transient
            except pkcs11_errors.PKCS11Error as error:
                # CKR_KEY_FUNCTION_NOT_PERMITTED (a disabled version) arrives as the bare base class.
                raise base.UnwrapFailed(
                    f"key {key_name!r} version {version} refused to decrypt ({error.__class__.__name__})"
                ) from None

        return await self._run(decrypt)

    async def _run(self, work: Callable[[Any], T]) -> T:
        return await asyncio.to_thread(self._locked, work)

    def _locked(self, work: Callable[[Any], T]) -> T:
        with _module_lock(self._module):
            return self._in_session(work)

    def _open(self) -> Any:
        known = (self._module, self._token_label)
        if known in _tokens:
            try:
                return _tokens[known].open(user_pin=self._pin)
            except _STALE_SLOT:
                del _tokens[known]
        _tokens[known] = _found(self._module, self._token_label)
        return _tokens[known].open(user_pin=self._pin)

    def _in_session(self, work: Callable[[Any], T]) -> T:
        try:
            with self._open() as session:
                return work(session)
        except (pkcs11_errors.PinIncorrect, pkcs11_errors.PinLenRange, pkcs11_errors.PinInvalid):
            raise base.AccessDenied(
                f"the PIN that {self._identity} read does not open token {self._token_label!r}"
            ) from None
        except pkcs11_errors.NoSuchKey:
            raise base.KeyVersionNotFound(
                f"token {self._token_label!r} lacks the requested key version"
            ) from None
        except (
            pkcs11_errors.DeviceError,
            pkcs11_errors.DeviceRemoved,
            pkcs11_errors.TokenNotPresent,
            pkcs11_errors.GeneralError,
        ) as error:
            raise base.TransientError(f"token {self._token_label!r}: {error.__class__.__name__}") from None


def _attribute(key: Any, attribute: Attribute, default: Any) -> Any:
    try:
        return key[attribute]
    except (
        pkcs11_errors.AttributeTypeInvalid,
        pkcs11_errors.AttributeSensitive,
        KeyError,
        NotImplementedError,
    ):
        return default
