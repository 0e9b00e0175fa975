"""What GitOps tools make of live objects: kstatus (Flux, kpt) computed by the real cli-utils library,
Argo CD's health from the shipped Lua script run in gopher-lua, `kubectl wait`, and drift after
server-side apply."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests import helpers
from tests.integration import tenant
from tests.integration.conftest import (
    CHECK_INTERVAL,
    GRACE_PERIOD,
    WITHIN_ONE_INTERVAL,
    Kubectl,
    OperatorProcess,
)
from vaopdev import binaries

HEALTH_LUA = binaries.REPO_ROOT / "deploy" / "argocd" / "health.lua"
EXAMPLES = binaries.REPO_ROOT / "examples"

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture(scope="module")
def gitops_check() -> Path:
    return binaries.GITOPS.ensure() / "gitops"


def _judge(tool: Path, obj: dict[str, Any], *args: str) -> tuple[str, str]:
    result = subprocess.run(
        [str(tool), *args], input=json.dumps(obj), capture_output=True, text=True, check=True, timeout=30
    )
    verdict = json.loads(result.stdout)
    return verdict["status"], verdict["message"]


def verdicts(tool: Path, obj: dict[str, Any]) -> tuple[str, str]:
    """(kstatus status, Argo CD health status) of one object."""
    return _judge(tool, obj, "kstatus")[0], _judge(tool, obj, "argocd-health", str(HEALTH_LUA))[0]


def _get(admin: client.ApiClient, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return helpers.get(admin, namespace, kind, name)


def test_a_new_object_is_in_progress_until_the_operator_reports(
    admin: client.ApiClient, namespace: str, gitops_check: Path
) -> None:
    created = helpers.create(admin, namespace, "VideoAnalyzerAccount", "fresh", {"region": "westeurope"})
    assert created["status"] == {"observedGeneration": 0}  # the CRD's default, before any report
    assert verdicts(gitops_check, created) == ("InProgress", "Progressing")
    account = tenant.wait_condition(admin, namespace, "fresh", "Ready", "True")
    assert verdicts(gitops_check, account) == ("Current", "Healthy")
    assert not {c["type"] for c in account["status"]["conditions"]} & {"Reconciling", "Stalled"}
    stale = json.loads(json.dumps(account))
    stale["metadata"]["generation"] += 1  # the spec changed and the operator has not seen it yet
    assert verdicts(gitops_check, stale) == ("InProgress", "Progressing")


def test_kubectl_wait_for_ready_succeeds_on_ready_and_times_out_on_stalled(
    kubectl: Kubectl, admin: client.ApiClient, namespace: str
) -> None:
    tenant.account(admin, namespace, "ok")
    tenant.account(admin, namespace, "stuck", key="missing")
    kubectl("-n", namespace, "wait", "--for=condition=Ready", "vaa/ok", "--timeout=30s")
    stuck = kubectl(
        "-n", namespace, "wait", "--for=condition=Ready", "vaa/stuck", "--timeout=3s", check=False
    )
    assert stuck.returncode != 0 and "timed out" in stuck.stderr
    kubectl("-n", namespace, "wait", "--for=condition=Stalled", "vaa/stuck", "--timeout=30s")


def test_a_definitive_error_is_failed_at_once(
    admin: client.ApiClient, namespace: str, keys_namespace: str, gitops_check: Path
) -> None:
    """What Flux's fail-fast reads: the first report on an account whose key is missing is Failed."""
    tenant.make_vault(admin, namespace, "vault", keys_namespace=keys_namespace)
    tenant.make_key(admin, namespace, "key", vault="vault", key_name="absent")
    tenant.grant(
        admin, keys_namespace=keys_namespace, identity_namespace=namespace, identity="studio-identity"
    )
    started = time.monotonic()
    tenant.account(admin, namespace, "studio", key="key")
    account = helpers.eventually(
        lambda: (
            obj
            if (obj := _get(admin, namespace, "VideoAnalyzerAccount", "studio"))["status"].get("state")
            else None
        )
    )
    assert time.monotonic() - started < WITHIN_ONE_INTERVAL
    stalled = helpers.condition(account, "Stalled")
    assert stalled is not None and (stalled["status"], stalled["reason"]) == ("True", "KeyNotFound")
    kstatus, message = _judge(gitops_check, account, "kstatus")
    assert kstatus == "Failed" and "absent" in message  # kstatus quotes the Stalled message
    assert _judge(gitops_check, account, "argocd-health", str(HEALTH_LUA))[0] == "Degraded"


def test_a_flaky_vault_is_in_progress_then_failed_after_the_grace_period(
    admin: client.ApiClient,
    namespace: str,
    keys_namespace: str,
    faulty_operator: OperatorProcess,
    gitops_check: Path,
) -> None:
    tenant.studio_on_customer_key(admin, namespace, keys_namespace)
    faulty_operator.fail_vault(namespace, "vault", failing=True)
    try:
        account = tenant.wait_condition(
            admin, namespace, "studio", "Reconciling", "True", timeout=WITHIN_ONE_INTERVAL
        )
        assert account["status"]["state"] == "Active"
        assert verdicts(gitops_check, account) == ("InProgress", "Progressing")
        account = tenant.wait_condition(
            admin, namespace, "studio", "Stalled", "True", timeout=GRACE_PERIOD + WITHIN_ONE_INTERVAL
        )
        assert account["status"]["state"] == "KeyInaccessible"
        assert helpers.condition(account, "Reconciling") is None
        assert verdicts(gitops_check, account) == ("Failed", "Degraded")
    finally:
        faulty_operator.fail_vault(namespace, "vault", failing=False)
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True", timeout=WITHIN_ONE_INTERVAL)
    assert verdicts(gitops_check, account) == ("Current", "Healthy")


def test_customer_keys_and_vaults_report_without_any_account(
    admin: client.ApiClient, namespace: str, keys_namespace: str, gitops_check: Path
) -> None:
    tenant.make_vault(admin, namespace, "vault", keys_namespace=keys_namespace)
    tenant.put_key_version(admin, keys_namespace, "ec", 1, tenant.ec_pem())
    tenant.put_key_version(admin, keys_namespace, "rsa", 1, tenant.rsa_pem(3072))
    client.CoreV1Api(admin).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="key-checker"))
    )
    tenant.grant(admin, keys_namespace=keys_namespace, identity_namespace=namespace, identity="key-checker")
    checked = {"vaultRef": {"name": "vault"}, "identity": {"serviceAccountName": "key-checker"}}
    helpers.create(admin, namespace, "CustomerKey", "ec-key", {**checked, "keyName": "ec"})
    helpers.create(admin, namespace, "CustomerKey", "rsa-key", {**checked, "keyName": "rsa"})
    helpers.create(
        admin, namespace, "CustomerKey", "unchecked", {"vaultRef": {"name": "vault"}, "keyName": "rsa"}
    )
    helpers.create(
        admin, namespace, "CustomerKey", "orphan", {"vaultRef": {"name": "nowhere"}, "keyName": "rsa"}
    )

    def reported(name: str, reason: str) -> dict[str, Any] | None:
        key = _get(admin, namespace, "CustomerKey", name)
        ready = helpers.condition(key, "Ready")
        return key if ready is not None and ready["reason"] == reason else None

    ec = helpers.eventually(lambda: reported("ec-key", "KeyUnsupported"), timeout=WITHIN_ONE_INTERVAL)
    assert helpers.condition(ec, "Stalled")["status"] == "True"  # type: ignore[index]
    assert verdicts(gitops_check, ec) == ("Failed", "Degraded")
    rsa = helpers.eventually(lambda: reported("rsa-key", "Valid"), timeout=WITHIN_ONE_INTERVAL)
    assert (rsa["status"]["keyType"], rsa["status"]["keySize"]) == ("RSA", 3072)
    assert verdicts(gitops_check, rsa) == ("Current", "Healthy")
    unchecked = helpers.eventually(lambda: reported("unchecked", "NotChecked"), timeout=WITHIN_ONE_INTERVAL)
    assert helpers.condition(unchecked, "Ready")["status"] == "True"  # type: ignore[index]
    assert "spec.identity.serviceAccountName" in helpers.condition(unchecked, "Ready")["message"]  # type: ignore[index]
    assert verdicts(gitops_check, unchecked) == ("Current", "Healthy")
    orphan = helpers.eventually(lambda: reported("orphan", "VaultNotFound"), timeout=WITHIN_ONE_INTERVAL)
    assert verdicts(gitops_check, orphan) == ("Failed", "Degraded")
    tenant.make_vault(admin, namespace, "nowhere", keys_namespace=keys_namespace)  # fixed: it recovers
    orphan = helpers.eventually(lambda: reported("orphan", "NotChecked"), timeout=WITHIN_ONE_INTERVAL)
    assert verdicts(gitops_check, orphan) == ("Current", "Healthy")
    vault = _get(admin, namespace, "KeyVault", "vault")
    assert vault["status"]["observedGeneration"] == vault["metadata"]["generation"]
    assert verdicts(gitops_check, vault) == ("Current", "Healthy")
    for obj in (ec, rsa, unchecked, orphan, vault):
        for condition in obj["status"]["conditions"]:
            assert condition["observedGeneration"] == obj["metadata"]["generation"]


def _wait_until_quiet(
    admin: client.ApiClient, namespace: str, objects: list[tuple[str, str]], *, quiet: float
) -> None:
    """Wait until none of ``objects`` has been written for ``quiet`` seconds."""

    def versions() -> list[str]:
        return [_get(admin, namespace, *o)["metadata"]["resourceVersion"] for o in objects]

    deadline = time.monotonic() + 60
    seen, since = versions(), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"{objects} still changing after 60 s"
        time.sleep(0.5)
        now = versions()
        if now != seen:
            seen, since = now, time.monotonic()


def test_server_side_apply_of_the_examples_twice_shows_no_drift(
    kubectl: Kubectl, admin: client.ApiClient
) -> None:
    kubectl("apply", "--server-side", "--field-manager=gitops", "-f", str(EXAMPLES))
    try:
        helpers.eventually(
            lambda: _get(admin, "tenant-a", "VideoAnalyzerAccount", "studio")["status"].get("state")
        )
        objects = [
            (kind, name)
            for kind, name in (
                ("VideoAnalyzerAccount", "studio"),
                ("VideoAnalyzerAccount", "studio-byok"),
                ("CustomerKey", "tenant-key"),
                ("CustomerKey", "tenant-key-pinned"),
                ("KeyVault", "tenant-vault"),
            )
        ]
        helpers.eventually(
            lambda: all(
                _get(admin, "tenant-a", kind, name)["status"].get("observedGeneration")
                for kind, name in objects
            )
        )
        # An account that starts using a key rechecks it, so a key's first report is not its last:
        # diff once nothing has changed for two check intervals, or the diff shows the operator's news.
        _wait_until_quiet(admin, "tenant-a", objects, quiet=2 * CHECK_INTERVAL)
        before = {o: _get(admin, "tenant-a", *o)["metadata"]["generation"] for o in objects}
        kubectl("apply", "--server-side", "--field-manager=gitops", "-f", str(EXAMPLES))
        diff = kubectl("diff", "--server-side", "--field-manager=gitops", "-f", str(EXAMPLES), check=False)
        assert diff.returncode == 0, diff.stdout + diff.stderr  # 0: no difference
        for kind, name in objects:
            obj = _get(admin, "tenant-a", kind, name)
            assert obj["metadata"]["generation"] == before[(kind, name)]
            assert "finalizers" not in obj["metadata"]
            for entry in obj["metadata"]["managedFields"]:
                if entry["manager"] == "gitops":
                    continue
                # The operator owns status, and of an account one annotation, its account ID (which
                # the GitOps source need not carry): no other annotation, no label, finalizer or spec.
                if entry.get("subresource") != "status":
                    assert kind == "VideoAnalyzerAccount", (kind, name, entry)
                    assert entry["fieldsV1"] == {
                        "f:metadata": {"f:annotations": {".": {}, "f:videoanalyzer.io/account-id": {}}}
                    }, (kind, name, entry)
                    continue
                assert set(entry["fieldsV1"]) == {"f:status"}, (kind, name, entry)
    finally:
        kubectl("delete", "namespace", "tenant-a", "--wait=false")
