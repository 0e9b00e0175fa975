"""The azureKeyVault provider end to end: the operator, the real control plane, the Key Vault stand-in.

The operator signs in exactly as on AKS with workload identity: a token of the account's ServiceAccount
(audience api://AzureADTokenExchange) is exchanged for a vault token, then the vault's role assignment
decides. See azure_stand_in for what the stand-in is and is not.
"""

from __future__ import annotations

import base64
import time

import pytest
from kubernetes import client

from tests import helpers
from tests.integration import tenant
from tests.integration.azure_stand_in import AzureKeyVault
from tests.integration.conftest import WITHIN_ONE_INTERVAL
from vaop import labels
from vaop.crypto import envelope

pytestmark = pytest.mark.usefixtures("operator")


def _vault(
    admin: client.ApiClient,
    namespace: str,
    azure: AzureKeyVault,
    *,
    key_type: str = "RSA",
    size: int = 3072,
    recovery_level: str = "Recoverable",
    federated_for: str = "studio-identity",
) -> tuple[str, str]:
    """A key whose role is assigned to an app federated with ``studio-identity``; KeyVault, CustomerKey."""
    key = f"kek-{namespace}"
    azure.add_version(key, key_type=key_type, size=size, recovery_level=recovery_level)
    client_id = azure.register_app(f"system:serviceaccount:{namespace}:{federated_for}")
    azure.assign(client_id, key)
    block = {
        "vaultURL": azure.vault_url,
        "tenantID": azure.tenant_id,
        "clientID": client_id,
        "authorityHost": azure.authority,
        "caBundle": azure.ca_pem,
    }
    helpers.create(
        admin, namespace, "KeyVault", "akv", {"region": "westeurope", "provider": {"azureKeyVault": block}}
    )
    tenant.make_key(admin, namespace, "key", vault="akv", key_name=key)
    return key, client_id


def _status(admin: client.ApiClient, namespace: str) -> dict[str, str]:
    account = helpers.get(admin, namespace, "VideoAnalyzerAccount", "studio")
    return dict(account["status"]["accountKey"])


def test_wrap_rotate_revoke_recover(
    admin: client.ApiClient, namespace: str, azure_vault: AzureKeyVault
) -> None:
    key, client_id = _vault(admin, namespace, azure_vault)
    first = azure_vault.keys[key].versions[0].version
    tenant.account(admin, namespace, "studio", key="key")
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    assert account["status"]["accountKey"]["wrappedBy"]["keyVersion"] == first
    kcv = account["status"]["accountKey"]["keyCheckValue"]
    status = helpers.eventually(lambda: helpers.get(admin, namespace, "CustomerKey", "key").get("status"))
    assert (status["keyType"], status["keySize"], status["currentVersion"]) == ("RSA", 3072, first)

    # Rotation: a new version appears (as `az keyvault key rotate` makes one); the account follows.
    second = azure_vault.add_version(key, size=4096)
    helpers.eventually(
        lambda: _status(admin, namespace)["wrappedBy"]["keyVersion"] == second,  # type: ignore[index]
        timeout=WITHIN_ONE_INTERVAL,
    )
    assert _status(admin, namespace)["keyCheckValue"] == kcv
    secret = client.CoreV1Api(admin).read_namespaced_secret("studio-account-key", namespace)
    sealed = envelope.decode(base64.b64decode(secret.data[labels.ENVELOPE_DATA_KEY]))
    assert (sealed.inner.key_version, sealed.inner.algorithm) == (second, "RSA-OAEP-256")

    # Revocation: the role assignment is removed.
    azure_vault.unassign(client_id, key)
    account = tenant.wait_locked(admin, namespace, "studio", "AccessDenied", timeout=WITHIN_ONE_INTERVAL)
    message = helpers.condition(account, "KeyInaccessible")["message"]  # type: ignore[index]
    assert "Key Vault Crypto Service Encryption User" in message and client_id in message

    # Restored: the account unlocks by itself, same account key.
    azure_vault.assign(client_id, key)
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True", timeout=WITHIN_ONE_INTERVAL)
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv


def test_vault_without_purge_protection_is_refused(
    admin: client.ApiClient, namespace: str, azure_vault: AzureKeyVault
) -> None:
    _vault(admin, namespace, azure_vault, recovery_level="Recoverable+Purgeable")
    tenant.account(admin, namespace, "studio", key="key")
    account = tenant.wait_condition(
        admin, namespace, "studio", "Ready", "False", reason="PurgeProtectionDisabled"
    )
    assert account["status"]["state"] == "Error"


def test_vault_without_soft_delete_is_refused(
    admin: client.ApiClient, namespace: str, azure_vault: AzureKeyVault
) -> None:
    _vault(admin, namespace, azure_vault, recovery_level="Purgeable")
    tenant.account(admin, namespace, "studio", key="key")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "False", reason="SoftDeleteDisabled")


def test_hsm_key_is_reported_and_ec_key_refused(
    admin: client.ApiClient, namespace: str, azure_vault: AzureKeyVault
) -> None:
    key, _ = _vault(admin, namespace, azure_vault, key_type="RSA-HSM", size=2048)
    tenant.account(admin, namespace, "studio", key="key")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    status = helpers.eventually(lambda: helpers.get(admin, namespace, "CustomerKey", "key").get("status"))
    assert (status["keyType"], status["keySize"]) == ("RSA-HSM", 2048)

    # The newest version is now an EC key: a configuration error to fix, while the account key stays
    # wrapped by (and readable with) the RSA-HSM version.
    azure_vault.add_version(key, key_type="EC")
    account = tenant.wait_condition(
        admin, namespace, "studio", "Ready", "False", reason="KeyUnsupported", timeout=WITHIN_ONE_INTERVAL
    )
    assert "EC key" in helpers.condition(account, "Ready")["message"]  # type: ignore[index]
    assert helpers.condition(account, "KeyInaccessible")["status"] == "False"  # type: ignore[index]


def test_identity_without_federated_credential_is_denied(
    admin: client.ApiClient, namespace: str, azure_vault: AzureKeyVault
) -> None:
    _vault(admin, namespace, azure_vault, federated_for="someone-else")
    tenant.account(admin, namespace, "studio", key="key")
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "False", reason="AccessDenied")
    message = helpers.condition(account, "Ready")["message"]  # type: ignore[index]
    assert "AADSTS70021" in message and "federated credential" in message


def test_deleted_key_locks_and_recovered_key_unlocks(
    admin: client.ApiClient, namespace: str, azure_vault: AzureKeyVault
) -> None:
    key, _ = _vault(admin, namespace, azure_vault)
    tenant.account(admin, namespace, "studio", key="key")
    kcv = tenant.wait_condition(admin, namespace, "studio", "Ready", "True")["status"]["accountKey"][
        "keyCheckValue"
    ]
    azure_vault.delete(key)
    tenant.wait_locked(admin, namespace, "studio", "KeyNotFound", timeout=WITHIN_ONE_INTERVAL)
    azure_vault.delete(key, deleted=False)  # recovered from soft-delete
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True", timeout=WITHIN_ONE_INTERVAL)
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv


def test_expired_key_locks_with_the_date(
    admin: client.ApiClient, namespace: str, azure_vault: AzureKeyVault
) -> None:
    key, _ = _vault(admin, namespace, azure_vault)
    tenant.account(admin, namespace, "studio", key="key")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    azure_vault.update(key, azure_vault.keys[key].versions[0].version, expires=int(time.time()) - 60)
    account = tenant.wait_locked(admin, namespace, "studio", "KeyDisabled", timeout=WITHIN_ONE_INTERVAL)
    assert "expired on" in helpers.condition(account, "KeyInaccessible")["message"]  # type: ignore[index]
