"""The azureKeyVault provider end to end: the operator, the real control plane, the Key Vault stand-in.

The operator signs in exactly as on AKS with workload identity: a token of the account's ServiceAccount
(audience api://AzureADTokenExchange) is exchanged for a vault token, then the vault's role assignment
decides. See azure_stand_in for what the stand-in is and is not.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests import helpers
from tests.integration import azure_stand_in, tenant
from tests.integration.azure_stand_in import AUDIENCE, AzureKeyVault
from tests.integration.conftest import WITHIN_ONE_INTERVAL
from vaop import labels
from vaop.crypto import envelope

pytestmark = pytest.mark.usefixtures("operator")


def azure_key(
    admin: client.ApiClient,
    namespace: str,
    azure: AzureKeyVault,
    *,
    key_type: str = "RSA",
    size: int = 3072,
    recovery_level: str = "Recoverable",
    federated_for: str = "studio-identity",
    app_in_spec: bool = True,
) -> tuple[str, str]:
    """A key whose role is assigned to an app federated with ``studio-identity``; KeyVault, CustomerKey.
    With ``app_in_spec`` False the KeyVault names no app: the identity's annotations must."""
    key = f"kek-{namespace}"
    azure.add_version(key, key_type=key_type, size=size, recovery_level=recovery_level)
    client_id = azure.register_app(f"system:serviceaccount:{namespace}:{federated_for}")
    azure.assign(client_id, key)
    block = {"vaultURL": azure.vault_url, "authorityHost": azure.authority, "caBundle": azure.ca_pem}
    if app_in_spec:
        block |= {"tenantID": azure.tenant_id, "clientID": client_id}
    helpers.create(
        admin, namespace, "KeyVault", "akv", {"region": "westeurope", "provider": {"azureKeyVault": block}}
    )
    tenant.make_key(admin, namespace, "key", vault="akv", key_name=key)
    return key, client_id


def test_wrap_rotate_revoke_recover(
    admin: client.ApiClient, namespace: str, azure_vault: AzureKeyVault
) -> None:
    key, client_id = azure_key(admin, namespace, azure_vault)
    first = azure_vault.keys[key].versions[0].version
    tenant.account(admin, namespace, "studio", key="key")
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    assert account["status"]["accountKey"]["wrappedBy"]["keyVersion"] == first
    kcv = account["status"]["accountKey"]["keyCheckValue"]
    status = tenant.key_status(admin, namespace)
    assert (status["keyType"], status["keySize"], status["currentVersion"]) == ("RSA", 3072, first)

    # Rotation: a new version appears (as `az keyvault key rotate` makes one); the account follows.
    second = azure_vault.add_version(key, size=4096)
    account = tenant.wait_wrapped_by(
        admin, namespace, "studio", keyVersion=second, timeout=WITHIN_ONE_INTERVAL
    )
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv
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
    azure_key(admin, namespace, azure_vault, recovery_level="Recoverable+Purgeable")
    tenant.account(admin, namespace, "studio", key="key")
    account = tenant.wait_condition(
        admin, namespace, "studio", "Ready", "False", reason="PurgeProtectionDisabled"
    )
    assert account["status"]["state"] == "Error"


def test_vault_without_soft_delete_is_refused(
    admin: client.ApiClient, namespace: str, azure_vault: AzureKeyVault
) -> None:
    azure_key(admin, namespace, azure_vault, recovery_level="Purgeable")
    tenant.account(admin, namespace, "studio", key="key")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "False", reason="SoftDeleteDisabled")


def test_hsm_key_is_reported_and_ec_key_refused(
    admin: client.ApiClient, namespace: str, azure_vault: AzureKeyVault
) -> None:
    key, _ = azure_key(admin, namespace, azure_vault, key_type="RSA-HSM", size=2048)
    tenant.account(admin, namespace, "studio", key="key")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    status = tenant.key_status(admin, namespace)
    assert (status["keyType"], status["keySize"]) == ("RSA-HSM", 2048)

    # The newest version is now an EC key: a configuration error to fix, while the account key stays
    # wrapped by (and readable with) the RSA-HSM version.
    azure_vault.add_version(key, key_type="EC")
    account = tenant.wait_condition(
        admin, namespace, "studio", "Ready", "False", reason="KeyUnsupported", timeout=WITHIN_ONE_INTERVAL
    )
    assert "EC key" in helpers.condition(account, "Ready")["message"]  # type: ignore[index]
    assert helpers.condition(account, "KeyInaccessible")["status"] == "False"  # type: ignore[index]


def test_a_key_with_more_versions_than_a_page_follows_its_newest(
    admin: client.ApiClient, namespace: str, azure_vault: AzureKeyVault
) -> None:
    """Key Vault lists a key's versions a page at a time (here two a page): the account is wrapped by
    the newest, found on the last page, and moves to the next one that appears there."""
    key = f"kek-{namespace}"
    for _ in range(4):
        azure_vault.add_version(key, size=2048)
    azure_vault.page_size = 2
    try:
        azure_key(admin, namespace, azure_vault, size=2048)  # the fifth version: on the third page
        newest = azure_vault.keys[key].versions[-1].version
        tenant.account(admin, namespace, "studio", key="key")
        account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
        assert account["status"]["accountKey"]["wrappedBy"]["keyVersion"] == newest
        sixth = azure_vault.add_version(key, size=2048)
        tenant.wait_wrapped_by(admin, namespace, "studio", keyVersion=sixth, timeout=WITHIN_ONE_INTERVAL)
        assert any("skiptoken" in path for _, path in azure_vault.requests)
    finally:
        azure_vault.page_size = 25


def test_a_key_whose_key_ops_leave_out_wrapping_is_refused_with_what_to_do(
    admin: client.ApiClient, namespace: str, azure_vault: AzureKeyVault
) -> None:
    key, _ = azure_key(admin, namespace, azure_vault)
    version = azure_vault.keys[key].versions[-1].version
    azure_vault.update(key, version, key_ops=["sign", "verify"])
    tenant.account(admin, namespace, "studio", key="key")
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "False", reason="KeyUnsupported")
    message = helpers.condition(account, "Ready")["message"]  # type: ignore[index]
    assert "leave out wrapKey and unwrapKey" in message and "set-attributes --ops" in message

    # Doing what the message says: the account provisions, with no other change.
    azure_vault.update(key, version, key_ops=["wrapKey", "unwrapKey"])
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True", timeout=WITHIN_ONE_INTERVAL)
    assert account["status"]["accountKey"]["wrappedBy"]["keyVersion"] == version


def test_deleted_key_locks_and_recovered_key_unlocks(
    admin: client.ApiClient, namespace: str, azure_vault: AzureKeyVault
) -> None:
    key, kcv = studio_on_azure(admin, namespace, azure_vault)
    azure_vault.delete(key)
    tenant.wait_locked(admin, namespace, "studio", "KeyNotFound", timeout=WITHIN_ONE_INTERVAL)
    azure_vault.delete(key, deleted=False)  # recovered from soft-delete
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True", timeout=WITHIN_ONE_INTERVAL)
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv


def studio_on_azure(admin: client.ApiClient, namespace: str, azure: AzureKeyVault) -> tuple[str, str]:
    """Account "studio" Ready on an Azure key (azure_key): the key's name and its key-check value."""
    key, _ = azure_key(admin, namespace, azure)
    tenant.account(admin, namespace, "studio", key="key")
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    return key, str(account["status"]["accountKey"]["keyCheckValue"])


def account_on_annotated_identity(admin: client.ApiClient, namespace: str, azure: AzureKeyVault) -> None:
    """An Active account whose KeyVault names no app: its ServiceAccount's annotations do, as on AKS."""
    _, client_id = azure_key(admin, namespace, azure, app_in_spec=False)
    annotations = {
        "azure.workload.identity/client-id": client_id,
        "azure.workload.identity/tenant-id": azure.tenant_id,
    }
    client.CoreV1Api(admin).create_namespaced_service_account(
        namespace,
        client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(name="studio-identity", annotations=annotations)
        ),
    )
    tenant.account(admin, namespace, "studio", key="key")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "True")


def test_app_from_the_identitys_workload_identity_annotations(
    admin: client.ApiClient, namespace: str, azure_vault: AzureKeyVault
) -> None:
    account_on_annotated_identity(admin, namespace, azure_vault)


@pytest.mark.parametrize(
    ("setup", "says"),
    [
        ({"federated_for": "someone-else"}, ["AADSTS70021", "federated credential"]),
        ({"app_in_spec": False}, ["set clientID in the KeyVault", "azure.workload.identity/client-id"]),
    ],
    ids=["no-federated-credential-for-the-identity", "no-app-in-keyvault-or-annotations"],
)
def test_missing_sign_in_setup_is_denied_with_what_to_do(
    admin: client.ApiClient,
    namespace: str,
    azure_vault: AzureKeyVault,
    setup: dict[str, Any],
    says: list[str],
) -> None:
    azure_key(admin, namespace, azure_vault, **setup)
    tenant.account(admin, namespace, "studio", key="key")
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "False", reason="AccessDenied")
    message = helpers.condition(account, "Ready")["message"]  # type: ignore[index]
    assert all(part in message for part in says), message


def test_vault_away_past_the_grace_period_locks_and_its_return_recovers(
    admin: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """A vault of its own, so that taking it away disturbs no other test."""
    vault = azure_stand_in.start(admin, tmp_path)
    try:
        azure_key(admin, namespace, vault)
        tenant.account(admin, namespace, "studio", key="key")
        tenant.vault_outage_locks_then_recovers(
            admin, namespace, "studio", take_away=vault.pause, bring_back=vault.resume
        )
    finally:
        vault.stop()


EXCHANGES = json.loads((Path(__file__).parents[1] / "fixtures" / "azure" / "exchanges.json").read_text())


def _shape(value: Any) -> Any:
    """Field names and JSON types, not values: what a client's parser depends on."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def _ask(
    azure: AzureKeyVault, method: str, path: str, *, token: str = "", form: str = ""
) -> tuple[int, Any, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if form:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(
        azure.authority + path, data=form.encode() or None, method=method, headers=headers
    )
    context = ssl.create_default_context(cadata=azure.ca_pem)
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


def test_stand_in_answers_in_the_shapes_of_the_rest_reference(
    admin: client.ApiClient, namespace: str, azure_vault: AzureKeyVault
) -> None:
    """Keeps the stand-in honest: each answer has the status, fields and error codes of the exchanges
    written down from the Azure REST reference (tests/fixtures/azure/exchanges.json)."""
    reference = EXCHANGES["exchanges"]
    key = f"kek-{namespace}"
    first = azure_vault.add_version(key, size=3072)
    azure_vault.add_version(key, size=3072)
    subject = "studio-identity"
    client.CoreV1Api(admin).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=subject))
    )
    client_id = azure_vault.register_app(f"system:serviceaccount:{namespace}:{subject}")
    other_id = azure_vault.register_app(f"system:serviceaccount:{namespace}:someone-else")
    assertion = (
        client.CoreV1Api(admin)
        .create_namespaced_service_account_token(
            subject,
            namespace,
            client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[AUDIENCE])),
        )
        .status.token
    )
    versions = f"/keys/{key}/versions?api-version=2025-07-01"

    def token_form(app: str) -> str:
        return urllib.parse.urlencode(
            {
                "client_id": app,
                "grant_type": "client_credentials",
                "scope": f"https://0.0.1:{azure_vault.port}/.default",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            }
        )

    status, headers, body = _ask(azure_vault, "GET", versions)
    assert (status, _shape(body)) == (401, _shape(reference["challenge"]["body"]))
    assert re.fullmatch(
        r'Bearer authorization="[^"]+/[0-9a-f-]{36}", resource="https://[^"]+"', headers["WWW-Authenticate"]
    )

    token_path = f"/{azure_vault.tenant_id}/oauth2/v2.0/token"
    status, _, body = _ask(azure_vault, "POST", token_path, form=token_form(other_id))
    assert (status, _shape(body)) == (400, _shape(reference["token_no_federated_credential"]["body"]))
    assert body["error"] == "invalid_client" and body["error_codes"] == [70021]
    status, _, body = _ask(azure_vault, "POST", token_path, form=token_form(client_id))
    assert (status, _shape(body)) == (200, _shape(reference["token"]["body"]))
    token = body["access_token"]

    status, _, body = _ask(azure_vault, "GET", versions, token=token)
    assert (status, body["error"]["code"], body["error"]["innererror"]["code"]) == (
        403,
        "Forbidden",
        "ForbiddenByRbac",
    )
    assert _shape(body) == _shape(reference["versions_forbidden"]["body"])
    azure_vault.assign(client_id, key)
    status, _, body = _ask(azure_vault, "GET", versions, token=token)
    assert (status, _shape(body)) == (200, _shape(reference["versions"]["body"]))
    status, _, body = _ask(azure_vault, "GET", f"/keys/{key}/{first}?api-version=2025-07-01", token=token)
    reference_key = reference["key"]["body"]
    assert status == 200 and _shape(body) == _shape(reference_key)
    azure_vault.assign(client_id)  # on the whole vault: a missing key is then "not found", not "forbidden"
    status, _, body = _ask(
        azure_vault, "GET", f"/keys/{key}-absent/versions?api-version=2025-07-01", token=token
    )
    assert (status, body["error"]["code"]) == (404, "KeyNotFound")
    azure_vault.update(key, first, enabled=False)
    status, _, body = _ask(
        azure_vault, "POST", f"/keys/{key}/{first}/unwrapkey?api-version=2025-07-01", token=token
    )
    assert (status, _shape(body)) == (403, _shape(reference["unwrap_disabled"]["body"]))
