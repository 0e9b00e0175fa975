"""The kubernetes provider parses each version's PEM once per process for its facts, not at every check."""

from __future__ import annotations

import asyncio
import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
from kubernetes_asyncio import client

from vaop.crypto import rsa
from vaop.providers import kubernetes


def _version_secret(pem: bytes, version: str, resource_version: str) -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=f"kek-v{version}",
            uid=f"uid-{version}",
            resource_version=resource_version,
            labels={kubernetes.LABEL_KEY_NAME: "kek", kubernetes.LABEL_KEY_VERSION: version},
        ),
        data={kubernetes.DATA_KEY: base64.b64encode(pem).decode()},
    )


def _pem() -> bytes:
    key = rsa_keys.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_each_version_is_parsed_once_across_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = [_version_secret(_pem(), "1", "100"), _version_secret(_pem(), "2", "101")]
    parsed: list[int] = []  # how many PEMs were parsed (their lengths: no key material in a failure)
    real_load = rsa.load_private_key

    def counted_load(data: bytes) -> object:
        parsed.append(len(data))
        return real_load(data)

    monkeypatch.setattr(rsa, "load_private_key", counted_load)

    async def check() -> list[tuple[str, rsa.KeyFacts]]:
        """A check as the key monitor makes it: a new provider, which lists every version."""
        async with client.ApiClient() as api:
            provider = kubernetes.KubernetesKeyProvider(
                api, namespace="vault", identity="tenant", soft_delete=True, purge_protection=True
            )

            async def listed(key_name: str) -> list[client.V1Secret]:
                return secrets

            monkeypatch.setattr(provider, "_list", listed)
            return [(v.version, v.facts) for v in await provider.versions("kek")]

    assert asyncio.run(check()) == [("1", rsa.KeyFacts("RSA", 2048)), ("2", rsa.KeyFacts("RSA", 2048))]
    assert len(parsed) == 2
    for _ in range(3):
        asyncio.run(check())
    assert len(parsed) == 2  # later checks read the facts, not the PEMs

    secrets[1] = _version_secret(b"not a key", "2", "102")  # the Secret changed: parsed again
    assert asyncio.run(check())[1] == ("2", rsa.KeyFacts(rsa.UNREADABLE, 0))
    assert len(parsed) == 3
