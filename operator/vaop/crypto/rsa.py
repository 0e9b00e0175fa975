"""RSA-OAEP wrapping of account keys with software keys, and the rule for which keys may wrap.

Providers that hold key material in software (the kubernetes provider, the platform system key)
use these; HSM and cloud providers do the same operation remotely and only report key facts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

RSA_OAEP_256 = "RSA-OAEP-256"  # OAEP with SHA-256 and MGF1-SHA-256: the default
RSA_OAEP_SHA1 = "RSA-OAEP"  # OAEP with SHA-1: for tokens such as SoftHSM2 2.6 that support nothing else
ALLOWED_RSA_SIZES = (2048, 3072, 4096)
# An RSA 4096 private key is about 3.3 kB of PEM. Anything much larger is not a key that may wrap, and
# parsing it (a 16384-bit key takes seconds to validate) would let one Secret stall the operator.
MAX_PEM_BYTES = 8192
UNREADABLE = "unreadable"  # the key type reported for key material that does not parse

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {RSA_OAEP_256: hashes.SHA256, RSA_OAEP_SHA1: hashes.SHA1}


class KeyMaterialError(ValueError):
    """The key material is unreadable or of a kind that may not wrap account keys."""


@dataclass(frozen=True)
class KeyFacts:
    """What a key is, as reported by whatever holds it."""

    key_type: str  # "RSA", "RSA-HSM", "EC", "oct", ...
    size: int  # bits (curve size for EC)
    # Operations wrapping needs that the holder does not permit this key (Azure's key_ops), by its names.
    forbidden_operations: tuple[str, ...] = ()


def _oaep(algorithm: str) -> padding.OAEP:
    try:
        digest = _HASHES[algorithm]()
    except KeyError:
        raise KeyMaterialError(f"unsupported wrap algorithm {algorithm!r}; use {RSA_OAEP_256}") from None
    return padding.OAEP(mgf=padding.MGF1(algorithm=digest), algorithm=digest, label=None)


@functools.lru_cache(maxsize=1024)
def load_private_key(pem: bytes) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | object:
    """Parse (and validate) a PEM private key; cached, because validating an RSA key costs
    milliseconds and every re-wrap of a rotation would otherwise parse the same two keys again."""
    if len(pem) > MAX_PEM_BYTES:
        raise KeyMaterialError(
            f"the key is {len(pem)} bytes of PEM, more than the {MAX_PEM_BYTES} an RSA key of "
            f"{ALLOWED_RSA_SIZES[-1]} bits or less needs"
        )
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise KeyMaterialError(f"the key is not a readable unencrypted PEM private key ({error})") from None


def facts(key: object) -> KeyFacts:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return KeyFacts("RSA", key.key_size)
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return KeyFacts("EC", key.curve.key_size)
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return KeyFacts("OKP", 0)
    return KeyFacts(type(key).__name__, 0)


def unsupported_reason(key: KeyFacts) -> str | None:
    """Why this key may not wrap account keys, or None when it may."""
    if key.key_type == UNREADABLE:
        return (
            f"its key material is not a readable, unencrypted PEM private key of at most {MAX_PEM_BYTES} "
            f"bytes; store an RSA key of {', '.join(map(str, ALLOWED_RSA_SIZES))} bits (PKCS#1 or PKCS#8)"
        )
    if key.key_type not in ("RSA", "RSA-HSM"):
        return (
            f"it is a {key.key_type} key{f' ({key.size} bits)' if key.size else ''}; only RSA keys of "
            f"{', '.join(map(str, ALLOWED_RSA_SIZES))} bits can wrap account keys"
        )
    if key.size not in ALLOWED_RSA_SIZES:
        return f"it is an RSA key of {key.size} bits; use {', '.join(map(str, ALLOWED_RSA_SIZES))} bits"
    if key.forbidden_operations:
        return (
            f"its permitted operations leave out {' and '.join(key.forbidden_operations)}; permit them on "
            "the version (Azure: az keyvault key set-attributes --ops wrapKey unwrapKey)"
        )
    return None


def wrap(public_key: rsa.RSAPublicKey, plaintext: bytes, *, algorithm: str = RSA_OAEP_256) -> bytes:
    return public_key.encrypt(plaintext, _oaep(algorithm))


def unwrap(private_key: rsa.RSAPrivateKey, ciphertext: bytes, *, algorithm: str) -> bytes:
    try:
        return private_key.decrypt(ciphertext, _oaep(algorithm))
    except ValueError:
        raise KeyMaterialError("the wrapped key does not open with this key version") from None


def generate(size: int = 3072) -> bytes:
    """A new RSA private key, PEM (PKCS#8), for the system key and the `keys create` command."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=size)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
