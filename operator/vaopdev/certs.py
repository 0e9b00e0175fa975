"""The local control plane's own credentials: client certificates (admin, front proxy, controller
manager) and the service-account signing key. Dev-only: the product issues serving certificates
only (``vaop.pki``)."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from vaop import pki


def issue_client(ca: pki.KeyPair, *, user: str, group: str | None = None) -> pki.KeyPair:
    """A client certificate; Kubernetes reads CN as the user name and O as a group."""
    return pki.issue(ca, pki.subject(user, group), usage=ExtendedKeyUsageOID.CLIENT_AUTH, sans=None, days=365)


def service_account_signing_key() -> tuple[bytes, bytes]:
    """An RSA private key and its public key, PEM-encoded: every Kubernetes version accepts RSA."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public
