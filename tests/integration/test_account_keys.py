"""Account keys end to end on the real control plane, with the operator on the chart's RBAC."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes_asyncio import client as aclient

from tests import helpers
from tests.integration import tenant
from tests.integration.conftest import CHECK_INTERVAL, Kubectl, OperatorProcess
from vaop import kubeclient, labels, platformkeys, platformroot
from vaop.crypto import envelope
from vaopdev import cluster, environment

pytestmark = pytest.mark.usefixtures("operator")


def _secret(admin: client.ApiClient, namespace: str, name: str) -> client.V1Secret:
    return client.CoreV1Api(admin).read_namespaced_secret(f"{name}-account-key", namespace)


def _service_accounts(admin: client.ApiClient, namespace: str) -> set[str]:
    return {
        sa.metadata.name for sa in client.CoreV1Api(admin).list_namespaced_service_account(namespace).items
    }


def _byok_setup(
    admin: client.ApiClient, namespace: str, keys_namespace: str, *, key_pem: bytes, **vault: Any
) -> None:
    tenant.make_vault(admin, namespace, "vault", keys_namespace=keys_namespace, **vault)
    tenant.put_key_version(admin, keys_namespace, "kek", 1, key_pem)
    tenant.make_key(admin, namespace, "key", vault="vault", key_name="kek")


def test_system_key_account_gets_a_wrapped_key(admin: client.ApiClient, namespace: str) -> None:
    tenant.account(admin, namespace, "studio")
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    status = account["status"]
    assert status["state"] == "Active"
    assert status["accountKey"]["secretName"] == "studio-account-key"
    assert status["accountKey"]["wrappedBy"]["type"] == "SystemKey"
    assert status["accountKey"]["algorithm"] == "RSA-OAEP-256+A256GCM"
    secret = _secret(admin, namespace, "studio")
    assert secret.type == "videoanalyzer.io/wrapped-account-key"
    assert secret.metadata.owner_references[0].uid == account["metadata"]["uid"]
    account_key = tenant.open_account_key(admin, namespace, "studio")
    assert len(account_key) == 32
    assert envelope.key_check_value(account_key) == status["accountKey"]["keyCheckValue"]
    # A system key is used as the operator: no identity is made for an account that does not need one.
    assert "studio-identity" not in _service_accounts(admin, namespace)
    reasons = {e.reason for e in client.CoreV1Api(admin).list_namespaced_event(namespace).items}
    assert "AccountKeyCreated" in reasons
    # managedFields name the operator as the writer of what it made (kubectl --show-managed-fields).
    status_managers = {m["manager"] for m in account["metadata"]["managedFields"] if m.get("subresource")}
    assert status_managers == {"vaop"}
    assert {m.manager for m in secret.metadata.managed_fields} == {"vaop"}


def test_etcd_holds_neither_plaintext_nor_inner_wrapped_key(
    admin: client.ApiClient, namespace: str, control_plane: cluster.ControlPlane
) -> None:
    tenant.account(admin, namespace, "studio")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    account_key = tenant.open_account_key(admin, namespace, "studio")
    secret = _secret(admin, namespace, "studio")
    sealed = envelope.decode(base64.b64decode(secret.data[labels.ENVELOPE_DATA_KEY]))
    infra = client.CoreV1Api(admin).read_namespaced_secret(
        platformkeys.INFRASTRUCTURE_SECRET, environment.OPERATOR_NAMESPACE
    )
    account = helpers.get(admin, namespace, "VideoAnalyzerAccount", "studio")
    inner = envelope.unseal(
        sealed,
        account=envelope.AccountIdentity(namespace, "studio", tenant.account_id(account)),
        outer_key=base64.b64decode(infra.data["1"]),
    )
    assert control_plane.bins is not None
    raw = subprocess.run(
        [
            str(control_plane.bins.etcdctl),
            f"--endpoints={control_plane.etcd_url}",
            "get",
            "--prefix",
            f"/registry/secrets/{namespace}/",
            "--print-value-only",
        ],
        capture_output=True,
        check=True,
    ).stdout
    assert b"wrapped-account-key" in raw  # the Secret really is in what was read
    for needle in (account_key, inner):
        assert needle not in raw
        assert base64.b64encode(needle) not in raw


def test_customer_key_account_uses_latest_version_and_switches_back_and_forth(
    admin: client.ApiClient, namespace: str, keys_namespace: str
) -> None:
    v1, v2 = tenant.rsa_pem(2048), tenant.rsa_pem(3072)
    _byok_setup(admin, namespace, keys_namespace, key_pem=v1)
    tenant.put_key_version(admin, keys_namespace, "kek", 2, v2)
    tenant.grant(
        admin, keys_namespace=keys_namespace, identity_namespace=namespace, identity="studio-identity"
    )
    # Made on the system key, the account has no identity; moved to the customer key, it gets one.
    tenant.account(admin, namespace, "studio")
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    kcv = account["status"]["accountKey"]["keyCheckValue"]
    assert "studio-identity" not in _service_accounts(admin, namespace)
    tenant.set_encryption(admin, namespace, "studio", key="key")
    account = tenant.wait_wrapped_by(admin, namespace, "studio", type="CustomerKey")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    wrapped_by = account["status"]["accountKey"]["wrappedBy"]
    assert wrapped_by == {
        "type": "CustomerKey",
        "keyVault": "vault",
        "keyName": "kek",
        "keyVersion": "2",
        "customerKey": "key",
        "identity": "studio-identity",
    }
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv
    assert envelope.key_check_value(tenant.open_account_key(admin, namespace, "studio", v2)) == kcv
    # The default identity it acts as was made by the operator, and goes with the account.
    identity = client.CoreV1Api(admin).read_namespaced_service_account("studio-identity", namespace)
    assert identity.metadata.owner_references[0].uid == account["metadata"]["uid"]
    assert {m.manager for m in identity.metadata.managed_fields} == {"vaop"}

    key = helpers.eventually(
        lambda: (
            (k := helpers.get(admin, namespace, "CustomerKey", "key")).get("status", {}).get("currentVersion")
            and k
        )
    )
    assert (key["status"]["keyType"], key["status"]["keySize"]) == ("RSA", 3072)

    tenant.set_encryption(admin, namespace, "studio", key=None)
    account = tenant.wait_wrapped_by(admin, namespace, "studio", type="SystemKey")
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv
    assert envelope.key_check_value(tenant.open_account_key(admin, namespace, "studio")) == kcv

    tenant.set_encryption(admin, namespace, "studio", key="key")
    account = tenant.wait_wrapped_by(admin, namespace, "studio", type="CustomerKey")
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv
    reasons = [e.reason for e in client.CoreV1Api(admin).list_namespaced_event(namespace).items]
    assert reasons.count("AccountKeyRewrapped") >= 2


def test_without_role_binding_access_is_denied_and_nothing_is_wrapped(
    admin: client.ApiClient, namespace: str, keys_namespace: str
) -> None:
    _byok_setup(admin, namespace, keys_namespace, key_pem=tenant.rsa_pem(2048))
    tenant.account(admin, namespace, "studio", key="key")
    account = tenant.wait_condition(
        admin, namespace, "studio", "KeyInaccessible", "True", reason="AccessDenied"
    )
    message = helpers.condition(account, "KeyInaccessible")["message"]  # type: ignore[index]
    assert f"ServiceAccount {namespace}/studio-identity" in message
    assert "RoleBinding" in message and keys_namespace in message
    assert account["status"]["state"] == "KeyInaccessible"
    assert "accountKey" not in account["status"]
    with pytest.raises(client.ApiException) as missing:
        _secret(admin, namespace, "studio")
    assert missing.value.status == 404


BAD_KEYS: dict[str, tuple[dict[str, Any], str, str]] = {
    "ec": ({"key_pem_kind": "ec"}, "KeyUnsupported", "EC key"),
    "rsa1024": ({"key_pem_kind": "rsa1024"}, "KeyUnsupported", "RSA key of 1024 bits"),
    "region": ({"region": "eastus"}, "RegionMismatch", "region eastus"),
    "softdelete": ({"soft_delete": False}, "SoftDeleteDisabled", "soft-delete"),
    "garbage": ({"key_pem_kind": "garbage"}, "KeyUnsupported", "not a readable, unencrypted PEM"),
    "oversized": ({"key_pem_kind": "oversized"}, "KeyUnsupported", "at most 8192 bytes"),
}


def test_bad_keys_give_clear_conditions_without_hot_retries(
    admin: client.ApiClient,
    namespace: str,
    keys_namespace: str,
    control_plane: cluster.ControlPlane,
    operator: OperatorProcess,
) -> None:
    # "oversized" is 16 kB of PEM: refused by its size, before the operator spends time parsing it.
    pems = {
        "ec": tenant.ec_pem(),
        "rsa1024": tenant.rsa_pem(1024),
        "garbage": b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        "oversized": b"-----BEGIN PRIVATE KEY-----\n" + b"QUFB" * 16 * 256 + b"\n-----END PRIVATE KEY-----\n",
        None: tenant.rsa_pem(2048),
    }
    for case, (case_options, _, _) in BAD_KEYS.items():
        # Accounts first: the admission webhook refuses an account on a key it already knows to be
        # bad (test_admission.py); here the operator itself must find out and say so.
        tenant.account(admin, namespace, f"acct-{case}", key=f"key-{case}")
        options = dict(case_options)
        pem = pems[options.pop("key_pem_kind", None)]
        vault = f"vault-{case}"
        tenant.make_vault(admin, namespace, vault, keys_namespace=keys_namespace, **options)
        tenant.put_key_version(admin, keys_namespace, f"kek-{case}", 1, pem)
        tenant.grant(
            admin,
            keys_namespace=keys_namespace,
            identity_namespace=namespace,
            identity=f"acct-{case}-identity",
        )
        tenant.make_key(admin, namespace, f"key-{case}", vault=vault, key_name=f"kek-{case}")
    for case, (_, reason, words) in BAD_KEYS.items():
        account = tenant.wait_condition(admin, namespace, f"acct-{case}", "Ready", "False", reason=reason)
        assert words in helpers.condition(account, "Ready")["message"]  # type: ignore[index]
        assert account["status"]["state"] == "Error"

    # A minute of the operator's API traffic now that all of them settled: no hot retry loop. Each
    # identity checks its key once per interval (the key monitor); nothing else may repeat.
    since = time.time()
    time.sleep(60)
    users = {f"system:serviceaccount:{operator.identity.namespace}:{operator.identity.service_account}"}
    users |= {f"system:serviceaccount:{namespace}:acct-{case}-identity" for case in BAD_KEYS}
    requests = list(control_plane.audit_events(since=since, users=users))
    touching = [
        e
        for e in requests
        if namespace in e.get("requestURI", "") or keys_namespace in e.get("requestURI", "")
    ]
    bound = len(BAD_KEYS) * (60 / CHECK_INTERVAL * 1.15 + 2)
    assert len(touching) <= bound, [f"{e['verb']} {e['requestURI']}" for e in touching]
    by_operator = [
        e for e in touching if e["user"]["username"] in users and "acct-" not in e["user"]["username"]
    ]
    # Token renewals at most: no status rewrites, no reconcile loops.
    assert len(by_operator) <= len(BAD_KEYS), [f"{e['verb']} {e['requestURI']}" for e in by_operator]
    assert operator.alive()


def test_moving_to_a_bad_key_keeps_the_current_wrap(
    admin: client.ApiClient, namespace: str, keys_namespace: str
) -> None:
    _byok_setup(admin, namespace, keys_namespace, key_pem=tenant.ec_pem())
    tenant.grant(
        admin, keys_namespace=keys_namespace, identity_namespace=namespace, identity="studio-identity"
    )
    tenant.account(admin, namespace, "studio")
    before = tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    secret_version = _secret(admin, namespace, "studio").metadata.resource_version
    tenant.set_encryption(admin, namespace, "studio", key="key")
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "False", reason="KeyUnsupported")
    assert "stays wrapped by the system key" in helpers.condition(account, "Ready")["message"]  # type: ignore[index]
    assert account["status"]["state"] == "Active"
    assert account["status"]["accountKey"] == before["status"]["accountKey"]
    assert _secret(admin, namespace, "studio").metadata.resource_version == secret_version


def test_deleting_the_account_removes_its_secret(admin: client.ApiClient, namespace: str) -> None:
    tenant.account(admin, namespace, "studio")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    helpers.custom(admin).delete_namespaced_custom_object(
        "videoanalyzer.io", "v1alpha1", namespace, "videoanalyzeraccounts", "studio"
    )

    def gone() -> bool:
        try:
            _secret(admin, namespace, "studio")
        except client.ApiException as error:
            return bool(error.status == 404)
        return False

    helpers.eventually(gone, timeout=60)


def test_lost_secret_gives_account_key_lost_and_no_new_key(
    admin: client.ApiClient, namespace: str, kubectl: Kubectl, operator: OperatorProcess
) -> None:
    tenant.account(admin, namespace, "studio")
    before = tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    # The webhook refuses this deletion to people; a loss still happens (a bad restore, break glass),
    # so delete as the garbage collector, which the webhook lets through.
    kubectl(
        "delete",
        "secret",
        "studio-account-key",
        "-n",
        namespace,
        "--as=system:serviceaccount:kube-system:generic-garbage-collector",
    )
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "False", reason="AccountKeyLost")
    assert account["status"]["state"] == "Error"
    assert "restore the Secret" in helpers.condition(account, "Ready")["message"]  # type: ignore[index]
    assert account["status"]["accountKey"] == before["status"]["accountKey"]  # the record of the key stays
    # Looked at again by a new leader (which re-checks every account), and still no new key is made.
    operator.stop()
    operator.start()
    helpers.eventually(
        lambda: operator.metric("vaop_account_reconciliations_total", reason="AccountKeyLost") >= 1
    )
    with pytest.raises(client.ApiException) as missing:
        _secret(admin, namespace, "studio")
    assert missing.value.status == 404


def test_platform_keys_are_made_once_and_never_reminted(
    admin: client.ApiClient, namespace: str, control_plane: cluster.ControlPlane
) -> None:
    tenant.account(admin, namespace, "studio")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    core = client.CoreV1Api(admin)
    infra = core.read_namespaced_secret(platformkeys.INFRASTRUCTURE_SECRET, environment.OPERATOR_NAMESPACE)
    system = core.read_namespaced_secret("vaop-system-key-v1", environment.OPERATOR_NAMESPACE)
    assert system.immutable is True
    assert len(base64.b64decode(infra.data["1"])) == 32

    # Platform keys looked for where there are none, while account keys exist: refused, nothing minted.
    async def load_where_there_are_none() -> None:
        configuration = await kubeclient.load_configuration(str(control_plane.admin_kubeconfig))
        async with aclient.ApiClient(configuration) as api:
            await platformkeys.load_or_create(api, namespace)

    with pytest.raises(platformroot.PlatformKeyMissing, match="Restore the Secrets"):
        asyncio.run(load_where_there_are_none())
    assert not core.list_namespaced_secret(namespace, label_selector=f"{labels.COMPONENT}=platform-key").items


def test_keys_cli_creates_and_rotates(
    admin: client.ApiClient, namespace: str, keys_namespace: str, control_plane: cluster.ControlPlane
) -> None:
    tenant.make_vault(admin, namespace, "vault", keys_namespace=keys_namespace)
    env = {"KUBECONFIG": str(control_plane.admin_kubeconfig)}
    base = [sys.executable, "-m", "vaop", "keys"]
    args = ["-n", namespace, "--vault", "vault", "--name", "kek"]
    for command in ("create", "rotate"):
        result = subprocess.run(
            [*base, command, *args, "--size", "2048"], env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
    result = subprocess.run(
        [*base, "disable", *args, "--version", "2"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    secrets = client.CoreV1Api(admin).list_namespaced_secret(
        keys_namespace, label_selector="videoanalyzer.io/key-name=kek"
    )
    versions = {
        s.metadata.labels["videoanalyzer.io/key-version"]: (s.metadata.annotations or {}).get(
            "videoanalyzer.io/key-enabled"
        )
        for s in secrets.items
    }
    assert versions == {"1": None, "2": "false"}
    assert {m.manager for s in secrets.items for m in s.metadata.managed_fields} == {"vaop-cli"}


def test_a_write_the_apiserver_refuses_shows_on_the_account(
    admin: client.ApiClient, kubectl: Kubectl, namespace: str
) -> None:
    """A cluster policy (a ValidatingAdmissionPolicy of someone else's) refuses the account-key Secret:
    the account says so in the apiserver's words, instead of the operator retrying in its log; once
    the policy goes, the account provisions."""
    policy = f"""
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: frozen-{namespace}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules: [{{apiGroups: [""], apiVersions: [v1], resources: [secrets], operations: [CREATE]}}]
  validations:
    - expression: "false"
      message: secrets are frozen in this namespace during the audit
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: frozen-{namespace}}}
spec:
  policyName: frozen-{namespace}
  validationActions: [Deny]
  matchResources:
    namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {namespace}}}}}
"""
    kubectl("apply", "-f", "-", stdin=policy)
    try:

        def policy_loaded() -> bool:  # a dry run is refused once the apiserver enforces the policy
            probe = ["create", "secret", "generic", "probe", "-n", namespace, "--dry-run=server"]
            return "secrets are frozen" in kubectl(*probe, check=False).stderr

        helpers.eventually(policy_loaded)
        tenant.account(admin, namespace, "studio")
        account = tenant.wait_condition(admin, namespace, "studio", "Ready", "False", reason="WriteRefused")
        message = helpers.condition(account, "Ready")["message"]  # type: ignore[index]
        assert "secrets are frozen in this namespace during the audit" in message
        assert account["status"]["state"] == "Error"
        assert helpers.condition(account, "Stalled")["status"] == "True"  # type: ignore[index]
    finally:
        kubectl("delete", "-f", "-", stdin=policy)
    tenant.wait_condition(admin, namespace, "studio", "Ready", "True", timeout=45)  # retried every 15 s


def test_tampered_account_key_secrets_give_a_clear_condition_and_never_a_new_key(
    admin: client.ApiClient, kubectl: Kubectl, namespace: str
) -> None:
    """Someone who can act as the operator (the webhook lets only it change these Secrets) alters or
    swaps envelopes: each shows as UnwrapFailed with what is wrong, nothing is re-minted, and the
    original envelope put back makes the account Ready with the same key."""
    tenant.account(admin, namespace, "studio")
    tenant.account(admin, namespace, "other")
    for name in ("studio", "other"):
        tenant.wait_condition(admin, namespace, name, "Ready", "True")
    kcv = helpers.get(admin, namespace, "VideoAnalyzerAccount", "studio")["status"]["accountKey"][
        "keyCheckValue"
    ]
    original = _secret(admin, namespace, "studio").data["envelope"]
    document = json.loads(base64.b64decode(original))
    flipped = bytearray(base64.b64decode(document["ciphertext"]))
    flipped[3] ^= 0x01
    as_operator = (
        f"--as=system:serviceaccount:{environment.OPERATOR_NAMESPACE}:{environment.OPERATOR_SERVICE_ACCOUNT}"
    )
    cases = {
        "a flipped bit": {**document, "ciphertext": base64.b64encode(bytes(flipped)).decode()},
        "another account's envelope": json.loads(
            base64.b64decode(_secret(admin, namespace, "other").data["envelope"])
        ),
        "an unknown format version": {**document, "v": 3},
        "garbage": "not an envelope",
    }
    expected = {
        "a flipped bit": ("UnwrapFailed", "does not open"),
        "another account's envelope": (
            "AccountKeyOfAnotherAccount",
            f"holds the account key of account {namespace}/other",
        ),
        "an unknown format version": ("UnwrapFailed", "format version 3 is not supported"),
        "garbage": ("UnwrapFailed", "does not hold a valid envelope"),
    }
    for case, content in cases.items():
        raw = content if isinstance(content, str) else json.dumps(content)
        tampered = base64.b64encode(raw.encode()).decode()
        _replace_envelope(kubectl, namespace, as_operator, tampered)
        account = _wait_refused(admin, namespace, "studio", *expected[case])
        assert account["status"]["accountKey"]["keyCheckValue"] == kcv, case
        assert _secret(admin, namespace, "studio").data["envelope"] == tampered, case
    _replace_envelope(kubectl, namespace, as_operator, original)
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv
    assert tenant.open_account_key(admin, namespace, "studio")  # the original still opens


def _replace_envelope(kubectl: Kubectl, namespace: str, as_user: str, envelope: str) -> None:
    """Update (not patch: the operator's role has no patch on Secrets) the account-key envelope."""
    secret = json.loads(kubectl("-n", namespace, "get", "secret", "studio-account-key", "-o", "json").stdout)
    secret["data"]["envelope"] = envelope
    kubectl("-n", namespace, "replace", as_user, "-f", "-", stdin=json.dumps(secret))


def _wait_refused(
    admin: client.ApiClient, namespace: str, name: str, reason: str, says: str
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        account = helpers.get(admin, namespace, "VideoAnalyzerAccount", name)
        ready = helpers.condition(account, "Ready") or {}
        return account if ready.get("reason") == reason and says in ready.get("message", "") else None

    return helpers.eventually(probe, timeout=30)


def test_a_restart_rewrites_nothing_that_is_right(
    admin: client.ApiClient,
    namespace: str,
    keys_namespace: str,
    operator: OperatorProcess,
    control_plane: cluster.ControlPlane,
) -> None:
    """A new leader re-checks every account; those already right cost no write: no Secret, status,
    ServiceAccount or Event (a restart with many accounts must not become a write storm)."""
    tenant.studio_on_customer_key(admin, namespace, keys_namespace)
    tenant.grant(admin, keys_namespace=keys_namespace, identity_namespace=namespace, identity="shared")
    client.CoreV1Api(admin).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="shared"))
    )
    names = [f"sys-{i}" for i in range(5)] + [f"byok-{i}" for i in range(5)]
    for name in names:
        spec: dict[str, Any] = {"region": "westeurope", "encryption": {"type": "SystemKey"}}
        if name.startswith("byok"):
            spec["encryption"] = {
                "type": "CustomerKey",
                "keyRef": {"name": "key"},
                "identity": {"serviceAccountName": "shared"},
            }
        helpers.create(admin, namespace, "VideoAnalyzerAccount", name, spec)
    for name in names:
        tenant.wait_condition(admin, namespace, name, "Ready", "True")

    operator.stop()
    since = time.time()  # whatever the old process still wrote is done: it is gone
    operator.start()

    def reconciled_all() -> bool:  # the new leader re-checked every account (with its key, if any)
        return operator.metric("vaop_account_reconciliations_total", reason="Ready") >= len(names)

    helpers.eventually(reconciled_all, timeout=CHECK_INTERVAL * 4)
    user = f"system:serviceaccount:{operator.identity.namespace}:{operator.identity.service_account}"
    writes = [
        f"{e['verb']} {e['requestURI']}"
        for e in control_plane.audit_events(since=since, users={user})
        if e["verb"] in ("create", "update", "patch", "delete")
        and e["objectRef"].get("namespace") in (namespace, keys_namespace)
        and e["objectRef"].get("subresource") != "token"  # a new process's tokens, not a stored write
    ]
    assert writes == []
