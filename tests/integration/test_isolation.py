"""Tenant isolation: what a tenant may try against another tenant's keys, the platform keys and the
operator itself, through the real apiserver, RBAC and webhook. Every denial names what is missing."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests import helpers
from tests.integration import tenant
from tests.integration.conftest import Kubectl
from vaop import platformkeys
from vaopdev import environment

pytestmark = pytest.mark.usefixtures("operator")
ALICE = "alice"  # a tenant with the built-in "edit" role in her own namespace


@pytest.fixture
def alice(admin: client.ApiClient, kubectl: Kubectl, namespace: str) -> Iterator[str]:
    client.RbacAuthorizationV1Api(admin).create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="alice-edit"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="edit"),
            subjects=[client.RbacV1Subject(kind="User", name=ALICE, api_group="rbac.authorization.k8s.io")],
        ),
    )
    # RBAC sees a new binding a moment later: wait for it rather than race it.
    helpers.eventually(
        lambda: (
            kubectl(
                "auth", "can-i", "create", "secrets", "-n", namespace, f"--as={ALICE}", check=False
            ).stdout.strip()
            == "yes"
        )
    )
    yield f"--as={ALICE}"


def _denied_with(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0, "allowed"
    for word in words:
        assert word in result.stderr, result.stderr


def test_a_vault_in_another_tenants_namespace_gives_access_denied(
    admin: client.ApiClient, namespace: str, keys_namespace: str
) -> None:
    """Tenant B keeps its key in its namespace and grants its own account; tenant A's KeyVault names B's
    namespace. A's account is refused as A's identity; the operator's own wider rights (it watches Secrets
    cluster-wide) never stand in, and B's account is untouched."""
    b = keys_namespace
    tenant.make_vault(admin, b, "vault", keys_namespace=b)
    tenant.put_key_version(admin, b, "kek", 1, tenant.rsa_pem(2048))
    tenant.make_key(admin, b, "key", vault="vault", key_name="kek")
    tenant.grant(admin, keys_namespace=b, identity_namespace=b, identity="studio-identity")
    tenant.account(admin, b, "studio", key="key")
    tenant.wait_condition(admin, b, "studio", "Ready", "True")

    tenant.make_vault(admin, namespace, "borrowed", keys_namespace=b)
    tenant.make_key(admin, namespace, "key", vault="borrowed", key_name="kek")
    tenant.account(admin, namespace, "studio", key="key")
    account = tenant.wait_locked(admin, namespace, "studio", "AccessDenied")
    message = helpers.condition(account, "KeyInaccessible")["message"]  # type: ignore[index]
    assert f"ServiceAccount {namespace}/studio-identity" in message
    assert f"may not list Secrets in namespace {b}" in message and "RoleBinding" in message
    assert "accountKey" not in account["status"]
    with pytest.raises(client.ApiException) as missing:
        client.CoreV1Api(admin).read_namespaced_secret("studio-account-key", namespace)
    assert missing.value.status == 404
    untouched = helpers.condition(helpers.get(admin, b, "VideoAnalyzerAccount", "studio"), "Ready")
    assert untouched is not None and untouched["status"] == "True"


def test_a_tenant_cannot_borrow_the_platform_system_key(admin: client.ApiClient, namespace: str) -> None:
    """The system key is a key Secret in the operator's namespace, in the kubernetes provider's format.
    A KeyVault naming that namespace is checked as the tenant's identity, which has no grant there."""
    tenant.make_vault(admin, namespace, "platform", keys_namespace=environment.OPERATOR_NAMESPACE)
    tenant.make_key(admin, namespace, "system", vault="platform", key_name=platformkeys.SYSTEM_KEY_NAME)
    tenant.account(admin, namespace, "studio", key="system")
    account = tenant.wait_locked(admin, namespace, "studio", "AccessDenied")
    message = helpers.condition(account, "KeyInaccessible")["message"]  # type: ignore[index]
    assert f"may not list Secrets in namespace {environment.OPERATOR_NAMESPACE}" in message
    assert "accountKey" not in account["status"]


def test_a_tenant_with_edit_rights_reaches_no_key_material_of_others(
    admin: client.ApiClient, kubectl: Kubectl, namespace: str, keys_namespace: str, alice: str
) -> None:
    tenant.account(admin, namespace, "studio")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    ns = ["-n", namespace]
    # Platform keys, other tenants' Secrets, the data API's sealed storage: RBAC says no, by name.
    _denied_with(
        kubectl("get", "secrets", "-n", environment.OPERATOR_NAMESPACE, alice, check=False),
        f'User "{ALICE}" cannot list resource "secrets"',
        f'in the namespace "{environment.OPERATOR_NAMESPACE}"',
    )
    _denied_with(kubectl("get", "secrets", "-n", keys_namespace, alice, check=False), "cannot list")
    _denied_with(
        kubectl("get", "sealedobjects", *ns, alice, check=False),
        'cannot list resource "sealedobjects" in API group "internal.videoanalyzer.io"',
    )
    _denied_with(
        kubectl(
            "create",
            "token",
            "video-analyzer-operator",
            "-n",
            environment.OPERATOR_NAMESPACE,
            alice,
            check=False,
        ),
        'cannot create resource "serviceaccounts/token"',
    )
    # Her own account-key Secret: readable with "edit" (it holds only the envelope, which needs the
    # infrastructure key too), never changeable.
    _denied_with(
        kubectl("label", "secret", "studio-account-key", *ns, "x=y", alice, check=False),
        "only the video-analyzer operator",
    )
    _denied_with(kubectl("delete", "secret", "studio-account-key", *ns, alice, check=False), "Delete the")


def test_a_secret_in_the_way_is_never_taken_over(
    admin: client.ApiClient, kubectl: Kubectl, namespace: str, alice: str
) -> None:
    """A tenant makes a Secret with the name the operator would use, then the account: the operator
    neither overwrites nor adopts it, says so, and makes the key once the name is free."""
    core = client.CoreV1Api(admin)
    data = {"note": base64.b64encode(b"mine").decode()}
    kubectl(
        "create", "secret", "generic", "late-account-key", "--from-literal=note=mine", "-n", namespace, alice
    )
    tenant.account(admin, namespace, "late")
    account = tenant.wait_condition(admin, namespace, "late", "Ready", "False", reason="SecretNameTaken")
    assert "was not made by the operator" in helpers.condition(account, "Ready")["message"]  # type: ignore[index]
    assert core.read_namespaced_secret("late-account-key", namespace).data == data
    kubectl("delete", "secret", "late-account-key", "-n", namespace, alice)
    account = tenant.wait_condition(admin, namespace, "late", "Ready", "True", timeout=60)
    assert account["status"]["accountKey"]["keyCheckValue"]
