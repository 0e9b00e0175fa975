"""One conformance suite every key-vault provider passes, each against its real back end.

Each harness knows how to make key versions in its vault and how to build the provider as an
identity with or without the access grant; the tests only use the provider interface.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import uuid
from collections.abc import AsyncIterator

import pytest
from kubernetes import client
from kubernetes_asyncio import client as aclient
from pkcs11 import Attribute, ObjectClass

from tests.integration import azure_stand_in, softhsm, tenant
from vaop import kubeclient
from vaop.crypto import envelope, rsa
from vaop.providers import azure as azure_provider
from vaop.providers import base
from vaop.providers import kubernetes as kubernetes_provider
from vaop.providers import openbao as openbao_provider
from vaop.providers import pkcs11 as pkcs11_provider
from vaop.providers.addresses import AddressPolicy
from vaopdev import cluster, openbao

pytestmark = pytest.mark.usefixtures("operator")  # the session's SoftHSM and control plane, set up

# The vaults of the fast tier listen on loopback: the policy of the local mode.
LOCAL = AddressPolicy(loopback=True)


class Harness(abc.ABC):
    key_type = "RSA"

    @abc.abstractmethod
    def add_rsa(self, key: str, version: int, bits: int) -> None: ...

    @abc.abstractmethod
    def add_ec(self, key: str, version: int) -> None: ...

    @abc.abstractmethod
    def disable(self, key: str, version: int) -> None: ...

    @abc.abstractmethod
    async def provider(self, *, granted: bool) -> base.KeyProvider: ...

    async def close(self) -> None:  # noqa: B027 (optional hook)
        """Release what ``provider`` opened."""


class KubernetesHarness(Harness):
    def __init__(self, admin: client.ApiClient, namespace: str, api: aclient.ApiClient) -> None:
        self.admin, self.namespace, self.api = admin, namespace, api
        self.identities = kubeclient.Identities(api, api.configuration)
        for name in ("granted", "denied"):
            client.CoreV1Api(admin).create_namespaced_service_account(
                namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
            )
        tenant.grant(admin, keys_namespace=namespace, identity_namespace=namespace, identity="granted")

    def add_rsa(self, key: str, version: int, bits: int) -> None:
        tenant.put_key_version(self.admin, self.namespace, key, version, tenant.rsa_pem(bits))

    def add_ec(self, key: str, version: int) -> None:
        tenant.put_key_version(self.admin, self.namespace, key, version, tenant.ec_pem())

    def disable(self, key: str, version: int) -> None:
        client.CoreV1Api(self.admin).patch_namespaced_secret(
            f"{key}-v{version}",
            self.namespace,
            {"metadata": {"annotations": {kubernetes_provider.ANNOTATION_ENABLED: "false"}}},
        )

    async def provider(self, *, granted: bool) -> base.KeyProvider:
        identity = kubeclient.ServiceAccountRef(self.namespace, "granted" if granted else "denied")
        return kubernetes_provider.KubernetesKeyProvider(
            await self.identities.client_for(identity),
            namespace=self.namespace,
            identity=str(identity),
            soft_delete=True,
            purge_protection=True,
        )

    async def close(self) -> None:
        await self.identities.close()


class OpenBaoHarness(KubernetesHarness):
    def __init__(
        self, admin: client.ApiClient, namespace: str, api: aclient.ApiClient, bao: openbao.OpenBao
    ) -> None:
        super().__init__(admin, namespace, api)
        self.bao = bao
        self.bao.api(
            "PUT",
            f"sys/policies/acl/{namespace}",
            {"policy": 'path "transit/*" { capabilities = ["read", "update"] }'},
        )
        self.bao.role(name=namespace, namespace=namespace, service_account="granted", policy=namespace)
        self.bao.role(
            name=f"{namespace}-denied", namespace=namespace, service_account="denied", policy="default"
        )

    def add_rsa(self, key: str, version: int, bits: int) -> None:
        name = f"{self.namespace}-{key}"
        if version == 1:
            self.bao.api("POST", f"transit/keys/{name}", {"type": f"rsa-{bits}"})
        else:
            self.bao.api("POST", f"transit/keys/{name}/rotate")

    def add_ec(self, key: str, version: int) -> None:
        self.bao.api("POST", f"transit/keys/{self.namespace}-{key}", {"type": "ecdsa-p256"})

    def disable(self, key: str, version: int) -> None:
        self.bao.api(
            "POST", f"transit/keys/{self.namespace}-{key}/config", {"min_decryption_version": version + 1}
        )

    async def provider(self, *, granted: bool) -> base.KeyProvider:
        identity = kubeclient.ServiceAccountRef(self.namespace, "granted" if granted else "denied")
        return _Prefixed(
            openbao_provider.OpenBaoKeyProvider(
                address=self.bao.address,
                transit_mount="transit",
                auth_mount="kubernetes",
                role=self.namespace if granted else f"{self.namespace}-denied",
                service_account_token=await self.identities.token(identity),
                identity=str(identity),
                addresses=LOCAL,
            ),
            f"{self.namespace}-",
        )


class Pkcs11Harness(Harness):
    key_type = "RSA-HSM"

    def __init__(self, namespace: str) -> None:
        self.prefix = f"{namespace}-"

    def add_rsa(self, key: str, version: int, bits: int) -> None:
        softhsm.add_rsa_version(self.prefix + key, version, bits=bits)

    def add_ec(self, key: str, version: int) -> None:
        softhsm.add_ec_version(self.prefix + key, version)

    def disable(self, key: str, version: int) -> None:
        with pkcs11_provider.find_token(softhsm.MODULE, softhsm.TOKEN).open(
            rw=True, user_pin=softhsm.PIN
        ) as session:
            private = session.get_key(
                object_class=ObjectClass.PRIVATE_KEY, label=self.prefix + key, id=str(version).encode()
            )
            private[Attribute.DECRYPT] = False

    async def provider(self, *, granted: bool) -> base.KeyProvider:
        pin = softhsm.PIN if granted else "00000000"
        inner = pkcs11_provider.Pkcs11KeyProvider(
            module=softhsm.MODULE, token_label=softhsm.TOKEN, pin=pin, identity="x"
        )
        return _Prefixed(inner, self.prefix)


class AzureHarness(KubernetesHarness):
    """Versions are opaque ids in Azure: the harness maps the suite's 1, 2, ... to them."""

    def __init__(
        self,
        admin: client.ApiClient,
        namespace: str,
        api: aclient.ApiClient,
        vault: azure_stand_in.AzureKeyVault,
    ) -> None:
        super().__init__(admin, namespace, api)
        self.vault = vault
        self.apps = {
            granted: vault.register_app(f"system:serviceaccount:{namespace}:{granted}")
            for granted in ("granted", "denied")
        }
        self.numbered: dict[tuple[str, int], str] = {}
        vault.assign(self.apps["granted"])

    def _add(self, key: str, version: int, **kind: object) -> None:
        name = f"{self.namespace}-{key}"
        self.numbered[(key, version)] = self.vault.add_version(name, **kind)  # type: ignore[arg-type]

    def add_rsa(self, key: str, version: int, bits: int) -> None:
        self._add(key, version, size=bits)

    def add_ec(self, key: str, version: int) -> None:
        self._add(key, version, key_type="EC")

    def disable(self, key: str, version: int) -> None:
        self.vault.update(f"{self.namespace}-{key}", self.numbered[(key, version)], enabled=False)

    async def provider(self, *, granted: bool) -> base.KeyProvider:
        identity = kubeclient.ServiceAccountRef(self.namespace, "granted" if granted else "denied")
        client_id = self.apps["granted" if granted else "denied"]
        connection = await azure_provider.connection(
            vault_url=self.vault.vault_url,
            tenant_id=self.vault.tenant_id,
            client_id=client_id,
            authority=self.vault.authority,
            ca_bundle=self.vault.ca_pem,
            identity=str(identity),
            service_account_token=await self.identities.token(
                identity, audiences=[azure_provider.TOKEN_AUDIENCE]
            ),
            addresses=LOCAL,
        )
        inner = azure_provider.AzureKeyVaultProvider(
            connection, vault_url=self.vault.vault_url, client_id=client_id, identity=str(identity)
        )
        return _Numbered(_Prefixed(inner, f"{self.namespace}-"), self.numbered)


class _Numbered(base.KeyProvider):
    """Shows Azure's opaque version ids as the suite's numbers (and back)."""

    def __init__(self, inner: base.KeyProvider, numbered: dict[tuple[str, int], str]) -> None:
        self._inner, self.name = inner, inner.name
        self._numbered = numbered

    def _number(self, key: str, version: str) -> str:
        return next((str(n) for (k, n), v in self._numbered.items() if k == key and v == version), version)

    def _opaque(self, key: str, version: str) -> str:
        return self._numbered.get((key, int(version)), version) if version.isdigit() else version

    async def protection(self, key_name: str) -> base.VaultProperties:
        return await self._inner.protection(key_name)

    async def versions(self, key_name: str) -> list[base.KeyVersion]:
        return [
            base.KeyVersion(key_name, self._number(key_name, v.version), v.facts, v.enabled)
            for v in await self._inner.versions(key_name)
        ]

    async def wrap(self, key: base.KeyVersion, plaintext: bytes) -> base.Wrapped:
        opaque = base.KeyVersion(key.name, self._opaque(key.name, key.version), key.facts, key.enabled)
        return await self._inner.wrap(opaque, plaintext)

    async def unwrap(self, key_name: str, version: str, ciphertext: bytes, *, algorithm: str) -> bytes:
        return await self._inner.unwrap(
            key_name, self._opaque(key_name, version), ciphertext, algorithm=algorithm
        )

    async def close(self) -> None:
        await self._inner.close()


class _Prefixed(base.KeyProvider):
    """Keeps the tests' key names short while each test's keys stay apart in a shared vault."""

    def __init__(self, inner: base.KeyProvider, prefix: str) -> None:
        self._inner, self._prefix, self.name = inner, prefix, inner.name

    async def protection(self, key_name: str) -> base.VaultProperties:
        return await self._inner.protection(self._prefix + key_name)

    async def versions(self, key_name: str) -> list[base.KeyVersion]:
        return [
            base.KeyVersion(key_name, v.version, v.facts, v.enabled)
            for v in await self._inner.versions(self._prefix + key_name)
        ]

    async def wrap(self, key: base.KeyVersion, plaintext: bytes) -> base.Wrapped:
        inner_key = base.KeyVersion(self._prefix + key.name, key.version, key.facts, key.enabled)
        return await self._inner.wrap(inner_key, plaintext)

    async def unwrap(self, key_name: str, version: str, ciphertext: bytes, *, algorithm: str) -> bytes:
        return await self._inner.unwrap(self._prefix + key_name, version, ciphertext, algorithm=algorithm)

    async def close(self) -> None:
        await self._inner.close()


@pytest.fixture(params=["kubernetes", "openbao", "pkcs11", "azureKeyVault"])
async def harness(
    request: pytest.FixtureRequest,
    admin: client.ApiClient,
    namespace: str,
    control_plane: cluster.ControlPlane,
) -> AsyncIterator[Harness]:
    configuration = await kubeclient.load_configuration(str(control_plane.admin_kubeconfig))
    async with aclient.ApiClient(configuration) as api:
        made: Harness
        if request.param == "kubernetes":
            made = KubernetesHarness(admin, namespace, api)
        elif request.param == "openbao":
            made = OpenBaoHarness(admin, namespace, api, request.getfixturevalue("bao_server"))
        elif request.param == "azureKeyVault":
            made = AzureHarness(admin, namespace, api, request.getfixturevalue("azure_vault"))
        else:
            made = Pkcs11Harness(namespace)
        yield made
        await made.close()


async def test_versions_report_type_size_and_state(harness: Harness) -> None:
    harness.add_rsa("kek", 1, 2048)
    harness.add_rsa("kek", 2, 3072)
    provider = await harness.provider(granted=True)
    versions = await provider.versions("kek")
    assert [(v.version, v.facts.key_type, v.enabled) for v in versions] == [
        ("1", harness.key_type, True),
        ("2", harness.key_type, True),
    ]
    assert (await provider.resolve("kek", None)).version == "2"
    assert (await provider.resolve("kek", "1")).version == "1"
    await provider.close()


async def test_wrap_unwrap_round_trip_records_the_algorithm(harness: Harness) -> None:
    harness.add_rsa("kek", 1, 2048)
    provider = await harness.provider(granted=True)
    key = await provider.resolve("kek", None)
    account_key = envelope.new_account_key()
    wrapped = await provider.wrap(key, account_key)
    assert wrapped.algorithm in (rsa.RSA_OAEP_256, rsa.RSA_OAEP_SHA1)
    assert account_key not in wrapped.ciphertext and base64.b64encode(account_key) not in wrapped.ciphertext
    assert (
        await provider.unwrap("kek", key.version, wrapped.ciphertext, algorithm=wrapped.algorithm)
        == account_key
    )
    await provider.close()


async def test_access_without_the_grant_is_denied(harness: Harness) -> None:
    harness.add_rsa("kek", 1, 2048)
    provider = await harness.provider(granted=False)
    with pytest.raises(base.AccessDenied):
        await provider.versions("kek")
    await provider.close()


async def test_missing_key_is_not_found(harness: Harness) -> None:
    provider = await harness.provider(granted=True)
    with pytest.raises(base.KeyNotFound):
        await provider.versions(f"absent-{uuid.uuid4().hex[:6]}")
    await provider.close()


async def test_ec_key_is_unsupported(harness: Harness) -> None:
    harness.add_ec("eck", 1)
    provider = await harness.provider(granted=True)
    with pytest.raises(base.KeyUnsupported, match="EC key"):
        await provider.resolve("eck", None)
    await provider.close()


async def test_disabled_version_is_skipped_or_refused(harness: Harness) -> None:
    harness.add_rsa("kek", 1, 2048)
    harness.add_rsa("kek", 2, 2048)
    harness.disable("kek", 1)
    provider = await harness.provider(granted=True)
    assert (await provider.resolve("kek", None)).version == "2"
    with pytest.raises(base.KeyDisabled):
        await provider.resolve("kek", "1")
    await provider.close()


async def test_concurrent_calls_do_not_trip_over_each_other(harness: Harness) -> None:
    """Many accounts check and unwrap at once (PKCS#11 keeps one login per process and token)."""
    harness.add_rsa("kek", 1, 2048)
    providers = [await harness.provider(granted=True) for _ in range(8)]
    key = await providers[0].resolve("kek", None)
    wrapped = await providers[0].wrap(key, b"k" * 32)
    opened = await asyncio.gather(
        *(p.unwrap("kek", key.version, wrapped.ciphertext, algorithm=wrapped.algorithm) for p in providers),
        *(p.resolve("kek", None) for p in providers),
    )
    assert opened[: len(providers)] == [b"k" * 32] * len(providers)
    for provider in providers:
        await provider.close()
