"""Key lifecycle on the real control plane: new versions, revocation, recovery, transient faults
(crashes and outages: test_faults.py)."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from kubernetes import client

from tests import helpers
from tests.integration import tenant
from tests.integration.conftest import CHECK_INTERVAL, GRACE_PERIOD, WITHIN_ONE_INTERVAL, OperatorProcess
from vaopdev import cluster


def _byok(
    admin: client.ApiClient, namespace: str, keys_namespace: str, accounts: list[str], pem: bytes
) -> None:
    tenant.make_vault(admin, namespace, "vault", keys_namespace=keys_namespace)
    tenant.put_key_version(admin, keys_namespace, "kek", 1, pem)
    tenant.make_key(admin, namespace, "key", vault="vault", key_name="kek")
    for name in accounts:
        tenant.grant(
            admin, keys_namespace=keys_namespace, identity_namespace=namespace, identity=f"{name}-identity"
        )
        tenant.account(admin, namespace, name, key="key")
    for name in accounts:
        tenant.wait_condition(admin, namespace, name, "Ready", "True")


def _wrapped_version(admin: client.ApiClient, namespace: str, name: str) -> str:
    account = helpers.get(admin, namespace, "VideoAnalyzerAccount", name)
    return str(account["status"]["accountKey"]["wrappedBy"]["keyVersion"])


def _kcv(admin: client.ApiClient, namespace: str, name: str) -> str:
    return str(
        helpers.get(admin, namespace, "VideoAnalyzerAccount", name)["status"]["accountKey"]["keyCheckValue"]
    )


@pytest.mark.usefixtures("operator")
def test_new_version_rewraps_tracking_accounts_and_leaves_pinned_ones(
    admin: client.ApiClient, namespace: str, keys_namespace: str
) -> None:
    v1, v2 = tenant.rsa_pem(2048), tenant.rsa_pem(2048)
    _byok(admin, namespace, keys_namespace, ["a", "b", "c"], v1)
    tenant.make_key(admin, namespace, "pinned", vault="vault", key_name="kek", version="1")
    tenant.grant(admin, keys_namespace=keys_namespace, identity_namespace=namespace, identity="p-identity")
    tenant.account(admin, namespace, "p", key="pinned")
    tenant.wait_condition(admin, namespace, "p", "Ready", "True")
    before = {name: _kcv(admin, namespace, name) for name in ("a", "b", "c", "p")}

    tenant.put_key_version(admin, keys_namespace, "kek", 2, v2)
    for name in ("a", "b", "c"):
        account = tenant.wait_wrapped_by(admin, namespace, name, keyVersion="2", timeout=WITHIN_ONE_INTERVAL)
        assert account["status"]["accountKey"]["keyCheckValue"] == before[name]
        assert tenant.open_account_key(admin, namespace, name, v2) is not None
    time.sleep(CHECK_INTERVAL)
    assert _wrapped_version(admin, namespace, "p") == "1"
    assert _kcv(admin, namespace, "p") == before["p"]
    key = helpers.get(admin, namespace, "CustomerKey", "key")
    assert key["status"]["currentVersion"] == "2"

    def rotation_events() -> list[Any] | None:
        """A rotation is told once per key (events.RotationSummary), naming the accounts re-wrapped."""
        found = [
            e
            for e in client.CoreV1Api(admin).list_namespaced_event(namespace).items
            if e.reason == "AccountKeysRewrapped"
        ]
        named = {n.strip(" .") for e in found for n in e.message.split(": ", 1)[1].split(",")}
        return found if named >= {"a", "b", "c"} else None

    rotations = helpers.eventually(rotation_events, timeout=WITHIN_ONE_INTERVAL)
    assert {(e.involved_object.kind, e.involved_object.name) for e in rotations} == {("CustomerKey", "key")}
    assert all("to version 2" in e.message and "p" not in e.message.split(": ", 1)[1] for e in rotations)
    events = client.CoreV1Api(admin).list_namespaced_event(namespace).items
    assert not [e for e in events if e.reason == "AccountKeyRewrapped"]  # not one per account


@pytest.mark.usefixtures("operator")
def test_revoked_access_locks_the_account_and_restored_access_recovers_it(
    admin: client.ApiClient, namespace: str, keys_namespace: str
) -> None:
    _byok(admin, namespace, keys_namespace, ["studio"], tenant.rsa_pem(2048))
    kcv = _kcv(admin, namespace, "studio")
    rbac = client.RbacAuthorizationV1Api(admin)
    rbac.delete_namespaced_role_binding("read-keys-studio-identity", keys_namespace)
    account = tenant.wait_locked(admin, namespace, "studio", "AccessDenied", timeout=WITHIN_ONE_INTERVAL)
    assert account["status"]["state"] == "KeyInaccessible"
    assert helpers.condition(account, "Ready")["reason"] == "AccessDenied"  # type: ignore[index]

    rbac.delete_namespaced_role("read-keys-studio-identity", keys_namespace)
    tenant.grant(
        admin, keys_namespace=keys_namespace, identity_namespace=namespace, identity="studio-identity"
    )
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True", timeout=WITHIN_ONE_INTERVAL)
    assert account["status"]["state"] == "Active"
    assert helpers.condition(account, "KeyInaccessible")["status"] == "False"  # type: ignore[index]
    assert _kcv(admin, namespace, "studio") == kcv

    def told() -> list[str] | None:
        reasons = [e.reason for e in client.CoreV1Api(admin).list_namespaced_event(namespace).items]
        return reasons if "AccessDenied" in reasons and "KeyAccessible" in reasons else None

    # The Event follows the status write that the wait above saw: give it the moment it takes.
    helpers.eventually(told, timeout=10)
    # The lock and the recovery are told once each (not again by Ready, which moved with them).
    on_account = [
        (e.reason, e.type)
        for e in client.CoreV1Api(admin).list_namespaced_event(namespace).items
        if e.involved_object.kind == "VideoAnalyzerAccount" and e.involved_object.name == "studio"
    ]
    assert sorted(on_account) == [
        ("AccessDenied", "Warning"),
        ("AccountKeyCreated", "Normal"),
        ("KeyAccessible", "Normal"),
    ]


def test_a_revocation_locks_many_accounts_with_a_few_vault_reads(
    admin: client.ApiClient,
    namespace: str,
    keys_namespace: str,
    operator: OperatorProcess,
    control_plane: cluster.ControlPlane,
) -> None:
    """SPEC: vault traffic grows with (identity, key) pairs, not with accounts; a refusal too. The
    accounts locked by one revoked grant share the vault's answer (a few seconds old at most)
    instead of each asking the vault again."""
    tenant.make_vault(admin, namespace, "vault", keys_namespace=keys_namespace)
    tenant.put_key_version(admin, keys_namespace, "kek", 1, tenant.rsa_pem(2048))
    tenant.make_key(admin, namespace, "key", vault="vault", key_name="kek")
    tenant.grant(admin, keys_namespace=keys_namespace, identity_namespace=namespace, identity="shared")
    names = tenant.shared_identity_accounts(admin, namespace, 24)
    for name in names:
        tenant.wait_condition(admin, namespace, name, "Ready", "True")

    since = time.time()
    client.RbacAuthorizationV1Api(admin).delete_namespaced_role_binding("read-keys-shared", keys_namespace)
    for name in names:
        tenant.wait_locked(admin, namespace, name, "AccessDenied", timeout=WITHIN_ONE_INTERVAL)
    time.sleep(1)  # the last requests' audit entries
    reads = [
        e["verb"]
        for e in control_plane.audit_events(since=since, users={f"system:serviceaccount:{namespace}:shared"})
        if e["objectRef"].get("namespace") == keys_namespace
    ]
    assert reads, "the key monitor's check must have read the key as the identity"
    # The check, then one read per few seconds of locking at most: not one per account (25 before).
    assert len(reads) <= 4, reads


@pytest.mark.usefixtures("operator")
@pytest.mark.parametrize("revocation", ["delete-key-secrets", "disable-version", "delete-keyvault"])
def test_each_revocation_gives_its_reason(
    admin: client.ApiClient, namespace: str, keys_namespace: str, revocation: str
) -> None:
    _byok(admin, namespace, keys_namespace, ["studio"], tenant.rsa_pem(2048))
    core = client.CoreV1Api(admin)
    if revocation == "delete-key-secrets":
        core.delete_namespaced_secret("kek-v1", keys_namespace)
        expected = "KeyNotFound"
    elif revocation == "disable-version":
        core.patch_namespaced_secret(
            "kek-v1", keys_namespace, {"metadata": {"annotations": {"videoanalyzer.io/key-enabled": "false"}}}
        )
        expected = "KeyDisabled"
    else:
        helpers.custom(admin).delete_namespaced_custom_object(
            "videoanalyzer.io", "v1alpha1", namespace, "keyvaults", "vault"
        )
        expected = "VaultNotFound"
    account = tenant.wait_locked(admin, namespace, "studio", expected, timeout=WITHIN_ONE_INTERVAL)
    assert account["status"]["state"] == "KeyInaccessible"


def _states_during(
    admin: client.ApiClient, namespace: str, name: str, seconds: float
) -> list[dict[str, Any]]:
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.append(helpers.get(admin, namespace, "VideoAnalyzerAccount", name))
        time.sleep(0.5)
    return seen


def test_transient_fault_shorter_than_grace_changes_nothing_and_longer_one_locks(
    admin: client.ApiClient, namespace: str, keys_namespace: str, faulty_operator: OperatorProcess
) -> None:
    """Faults come from the providers' test seam (vaop/providers/faults.py): the vault refuses connections."""
    _byok(admin, namespace, keys_namespace, ["studio"], tenant.rsa_pem(2048))

    faulty_operator.fail_vault(namespace, "vault", failing=True)
    short = _states_during(admin, namespace, "studio", GRACE_PERIOD / 2)
    faulty_operator.fail_vault(namespace, "vault", failing=False)
    assert all(s["status"]["state"] == "Active" for s in short)
    assert all(helpers.condition(s, "KeyInaccessible")["status"] == "False" for s in short)  # type: ignore[index]
    degraded = [helpers.condition(s, "VaultDegraded") for s in short]
    assert any(d and d["status"] == "True" and d["reason"] == "VaultUnreachable" for d in degraded)
    tenant.wait_condition(admin, namespace, "studio", "VaultDegraded", "False", timeout=WITHIN_ONE_INTERVAL)

    faulty_operator.fail_vault(namespace, "vault", failing=True)
    try:
        account = tenant.wait_locked(
            admin, namespace, "studio", "VaultUnreachable", timeout=GRACE_PERIOD + WITHIN_ONE_INTERVAL
        )
        assert "grace period" in helpers.condition(account, "KeyInaccessible")["message"]  # type: ignore[index]
    finally:
        faulty_operator.fail_vault(namespace, "vault", failing=False)
    tenant.wait_condition(admin, namespace, "studio", "Ready", "True", timeout=WITHIN_ONE_INTERVAL)


def test_no_key_material_in_operator_log_events_or_status(
    admin: client.ApiClient, namespace: str, keys_namespace: str, operator: OperatorProcess
) -> None:
    """The operator runs at DEBUG in tests; even so, no key, PEM or envelope byte reaches its log."""
    v1, v2 = tenant.rsa_pem(2048), tenant.rsa_pem(2048)
    _byok(admin, namespace, keys_namespace, ["studio"], v1)
    tenant.put_key_version(admin, keys_namespace, "kek", 2, v2)
    tenant.wait_wrapped_by(admin, namespace, "studio", keyVersion="2", timeout=WITHIN_ONE_INTERVAL)
    account_key = tenant.open_account_key(admin, namespace, "studio", v2)
    secret = client.CoreV1Api(admin).read_namespaced_secret("studio-account-key", namespace)
    envelope_b64 = secret.data["envelope"]
    pem_body = [line for line in v2.decode().splitlines() if "-----" not in line][3]
    needles = {
        "PEM marker": "PRIVATE KEY",
        "PEM marker in base64": base64.b64encode(b"-----BEGIN").decode()[:12],
        "tenant key PEM line": pem_body,
        "account key (base64)": base64.b64encode(account_key).decode(),
        "account key (hex)": account_key.hex(),
        "envelope": envelope_b64[40:80],
    }
    log = operator.log()
    events = str(
        [(e.reason, e.message) for e in client.CoreV1Api(admin).list_namespaced_event(namespace).items]
    )
    status = str(helpers.get(admin, namespace, "VideoAnalyzerAccount", "studio")["status"])
    for what, needle in needles.items():
        assert needle not in log, f"{what} in the operator log"
        assert needle not in events, f"{what} in an event"
        assert needle not in status, f"{what} in the status"
