"""A tenant of each provider, for benchmarks: a vault, key "kek", ServiceAccount "tenant" granted
it, KeyVault "vault" and CustomerKey "key" in the tenant's namespace, and what the tenant's key
team does over time: a new key version, access taken away and given back.

The vaults are the tests' real ones: the kubernetes provider's Secrets, an OpenBao server, a
SoftHSM2 token, and the Azure Key Vault stand-in (tests/integration/azure_stand_in.py).
"""

from __future__ import annotations

from typing import Any, Protocol

from kubernetes import client
from tests.integration import azure_stand_in, softhsm

from bench import harness
from vaopdev import openbao

IDENTITY = "tenant"


class Tenant(Protocol):
    provider: str  # as the operator's metrics name it
    ns: str

    @property
    def version(self) -> str:
        """The key's newest version, as the accounts' status names it."""

    def rotate(self) -> None: ...
    def revoke(self) -> None: ...
    def restore(self) -> None: ...


def _service_account(api: client.ApiClient, ns: str) -> None:
    client.CoreV1Api(api).create_namespaced_service_account(
        ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=IDENTITY))
    )


class KubernetesTenant:
    provider = "kubernetes"

    def __init__(self, api: client.ApiClient, ns: str) -> None:
        self.api, self.ns, self._number = api, ns, 1
        harness.kubernetes_key_tenant(api, ns, identity=IDENTITY)
        harness.put_key_version(api, ns, 1)

    @property
    def version(self) -> str:
        return str(self._number)

    def rotate(self) -> None:
        self._number += 1
        harness.put_key_version(self.api, self.ns, self._number)

    def revoke(self) -> None:
        harness.revoke_keys(self.api, self.ns)

    def restore(self) -> None:
        harness.grant_keys(self.api, self.ns, identity=IDENTITY)


class OpenBaoTenant:
    """A transit key; logins through the Kubernetes auth role ``ns`` whose tokens live ``ttl``."""

    provider = "openbao"

    def __init__(self, api: client.ApiClient, ns: str, bao: openbao.OpenBao, *, ttl: str) -> None:
        self.ns, self._bao, self._number = ns, bao, 1
        _service_account(api, ns)
        bao.api("POST", "transit/keys/kek", {"type": "rsa-2048"})
        bao.grant(policy=ns, key="kek")
        bao.role(name=ns, namespace=ns, service_account=IDENTITY, policy=ns, ttl=ttl)
        vault = {"region": "westeurope", "provider": {"openbao": {"address": bao.address, "role": ns}}}
        harness.customer_key_setup(api, ns, vault, "kek")

    @property
    def version(self) -> str:
        return str(self._number)

    def rotate(self) -> None:
        self._bao.api("POST", "transit/keys/kek/rotate")
        self._number += 1

    def revoke(self) -> None:
        self._bao.api("DELETE", f"sys/policies/acl/{self.ns}")

    def restore(self) -> None:
        self._bao.grant(policy=self.ns, key="kek")


class Pkcs11Tenant:
    """Key pairs in SoftHSM2's token ``softhsm.TOKEN`` (SOFTHSM2_CONF set for this process and the
    operator), labelled after the namespace; the PIN in Secret "hsm-pin", readable by the identity."""

    provider = "pkcs11"

    def __init__(self, api: client.ApiClient, ns: str) -> None:
        self.api, self.ns, self._number = api, ns, 1
        self._label = f"kek-{ns}"
        softhsm.add_rsa_version(self._label, 1)
        _service_account(api, ns)
        client.CoreV1Api(api).create_namespaced_secret(
            ns,
            client.V1Secret(metadata=client.V1ObjectMeta(name="hsm-pin"), string_data={"pin": softhsm.PIN}),
        )
        rule = client.V1PolicyRule(
            api_groups=[""], resources=["secrets"], resource_names=["hsm-pin"], verbs=["get"]
        )
        client.RbacAuthorizationV1Api(api).create_namespaced_role(
            ns, client.V1Role(metadata=client.V1ObjectMeta(name="read-pin"), rules=[rule])
        )
        self.restore()
        block = {
            "module": softhsm.MODULE,
            "tokenLabel": softhsm.TOKEN,
            "pinSecretRef": {"name": "hsm-pin", "key": "pin"},
        }
        harness.customer_key_setup(
            api, ns, {"region": "westeurope", "provider": {"pkcs11": block}}, self._label
        )

    @property
    def version(self) -> str:
        return str(self._number)

    def rotate(self) -> None:
        self._number += 1
        softhsm.add_rsa_version(self._label, self._number)

    def revoke(self) -> None:
        client.RbacAuthorizationV1Api(self.api).delete_namespaced_role_binding("read-pin", self.ns)

    def restore(self) -> None:
        client.RbacAuthorizationV1Api(self.api).create_namespaced_role_binding(
            self.ns,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="read-pin"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="read-pin"
                ),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name=IDENTITY, namespace=self.ns)],
            ),
        )


class AzureTenant:
    """An app registration federated with the identity, given the role on key "kek"."""

    provider = "azureKeyVault"

    def __init__(self, api: client.ApiClient, ns: str, vault: azure_stand_in.AzureKeyVault) -> None:
        self.ns, self._vault = ns, vault
        _service_account(api, ns)
        self.version = vault.add_version("kek", size=2048)
        self._client_id = vault.register_app(f"system:serviceaccount:{ns}:{IDENTITY}")
        self.restore()
        block: dict[str, Any] = {
            "vaultURL": vault.vault_url,
            "tenantID": vault.tenant_id,
            "clientID": self._client_id,
            "authorityHost": vault.authority,
            "caBundle": vault.ca_pem,
        }
        harness.customer_key_setup(
            api, ns, {"region": "westeurope", "provider": {"azureKeyVault": block}}, "kek"
        )

    def rotate(self) -> None:
        self.version = self._vault.add_version("kek", size=2048)

    def revoke(self) -> None:
        self._vault.unassign(self._client_id, "kek")

    def restore(self) -> None:
        self._vault.assign(self._client_id, "kek")
