"""The pkcs11 provider end to end: keys inside a real SoftHSM2 token, the real control plane."""

from __future__ import annotations

import base64
import uuid

import pytest
from kubernetes import client

from tests import helpers
from tests.integration import softhsm, tenant
from tests.integration.conftest import WITHIN_ONE_INTERVAL
from vaop import labels
from vaop.crypto import envelope

pytestmark = pytest.mark.usefixtures("operator")


def _hsm_vault(admin: client.ApiClient, namespace: str, label: str) -> None:
    """PIN Secret, the grant to read it, KeyVault and CustomerKey for ``studio-identity``."""
    core, rbac = client.CoreV1Api(admin), client.RbacAuthorizationV1Api(admin)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="hsm-pin"), string_data={"pin": softhsm.PIN}),
    )
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="read-pin"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[""], resources=["secrets"], resource_names=["hsm-pin"], verbs=["get"]
                )
            ],
        ),
    )
    _grant_pin(admin, namespace)
    block = {
        "module": softhsm.MODULE,
        "tokenLabel": softhsm.TOKEN,
        "pinSecretRef": {"name": "hsm-pin", "key": "pin"},
    }
    helpers.create(
        admin, namespace, "KeyVault", "hsm", {"region": "westeurope", "provider": {"pkcs11": block}}
    )
    tenant.make_key(admin, namespace, "key", vault="hsm", key_name=label)


def _grant_pin(admin: client.ApiClient, namespace: str) -> None:
    """The access grant: studio-identity may read the PIN Secret."""
    client.RbacAuthorizationV1Api(admin).create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="read-pin"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="read-pin"),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name="studio-identity", namespace=namespace)
            ],
        ),
    )


def _label() -> str:
    return f"kek-{uuid.uuid4().hex[:8]}"


def test_wrap_rotate_revoke_recover(admin: client.ApiClient, namespace: str) -> None:
    label = _label()
    softhsm.add_rsa_version(label, 1)
    _hsm_vault(admin, namespace, label)
    tenant.account(admin, namespace, "studio", key="key")
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    kcv = account["status"]["accountKey"]["keyCheckValue"]
    # SoftHSM2 2.6 does RSA-OAEP only with SHA-1: the envelope says so.
    assert account["status"]["accountKey"]["algorithm"] == "RSA-OAEP+A256GCM"
    secret = client.CoreV1Api(admin).read_namespaced_secret("studio-account-key", namespace)
    assert (
        envelope.decode(base64.b64decode(secret.data[labels.ENVELOPE_DATA_KEY])).inner.algorithm == "RSA-OAEP"
    )
    status = helpers.eventually(lambda: helpers.get(admin, namespace, "CustomerKey", "key").get("status"))
    assert (status["keyType"], status["keySize"]) == ("RSA-HSM", 2048)

    softhsm.add_rsa_version(label, 2, bits=3072)
    account = tenant.wait_wrapped_by(admin, namespace, "studio", keyVersion="2", timeout=WITHIN_ONE_INTERVAL)
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv

    client.RbacAuthorizationV1Api(admin).delete_namespaced_role_binding("read-pin", namespace)
    account = tenant.wait_locked(admin, namespace, "studio", "AccessDenied", timeout=WITHIN_ONE_INTERVAL)
    assert "hsm-pin" in helpers.condition(account, "KeyInaccessible")["message"]  # type: ignore[index]

    _grant_pin(admin, namespace)
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True", timeout=WITHIN_ONE_INTERVAL)
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv


def test_destroyable_key_is_refused(admin: client.ApiClient, namespace: str) -> None:
    label = _label()
    softhsm.add_rsa_version(label, 1, destroyable=True)
    _hsm_vault(admin, namespace, label)
    tenant.account(admin, namespace, "studio", key="key")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "False", reason="SoftDeleteDisabled")


def test_ec_key_in_the_token_is_unsupported(admin: client.ApiClient, namespace: str) -> None:
    label = _label()
    softhsm.add_ec_version(label, 1)
    _hsm_vault(admin, namespace, label)
    tenant.account(admin, namespace, "studio", key="key")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "False", reason="KeyUnsupported")
