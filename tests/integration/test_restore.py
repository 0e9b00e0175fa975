"""Restores on the real control plane: a tenant namespace backed up object by object (as Velero does:
no uid, resourceVersion, status or ownerReferences survive), deleted, and restored by the backup
identity in any order. Every account comes back Active on its same account key, and every data
object reads back as it was; nothing is ever re-keyed because a restore is half done."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests import helpers
from tests.integration import backup as backups
from tests.integration import tenant
from tests.integration.conftest import WITHIN_ONE_INTERVAL, Kubectl
from vaop import labels
from vaop.crypto import envelope

pytestmark = pytest.mark.usefixtures("operator", "restore_identity")
AS_GARBAGE_COLLECTOR = "--as=system:serviceaccount:kube-system:generic-garbage-collector"


@pytest.fixture(scope="session")
def restore_identity(admin: client.ApiClient) -> Iterator[str]:
    """Velero's ServiceAccount, bound to cluster-admin as `velero install` binds it."""
    rbac = client.RbacAuthorizationV1Api(admin)
    binding = client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name="velero-test"),
        role_ref=client.V1RoleRef(
            api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"
        ),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="velero", namespace="velero")],
    )
    rbac.create_cluster_role_binding(binding)
    yield backups.VELERO
    rbac.delete_cluster_role_binding("velero-test")


def _video(namespace: str, name: str, account: str, title: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "data.videoanalyzer.io/v1alpha1",
            "kind": "Video",
            "metadata": {"name": name, "namespace": namespace, "labels": {"camera": name}},
            "spec": {"accountName": account, "title": title, "description": f"{title}, restored"},
        }
    )


def _read(kubectl: Kubectl, namespace: str, kind: str, name: str) -> dict[str, Any]:
    """What a data object reads back as: its identity and content (versions and times aside)."""
    obj = json.loads(kubectl("-n", namespace, "get", kind, name, "-o", "json").stdout)
    meta = obj["metadata"]
    kept = {k: meta.get(k) for k in ("name", "namespace", "uid", "labels", "annotations")}
    return {"metadata": kept, "spec": obj.get("spec"), "ready": helpers.condition(obj, "Ready")["reason"]}  # type: ignore[index]


@pytest.fixture
def tenant_with_data(
    admin: client.ApiClient, kubectl: Kubectl, namespace: str, keys_namespace: str
) -> dict[str, Any]:
    """studio on the system key, byok on a customer key (kubernetes provider, key Secrets and grant in
    ``keys_namespace``, which the restore leaves alone), a Video on each."""
    kcvs = tenant.system_and_customer_key_accounts(admin, namespace, keys_namespace)
    kubectl("apply", "-f", "-", stdin=_video(namespace, "lobby", "studio", "Lobby camera"))
    kubectl("apply", "-f", "-", stdin=_video(namespace, "door", "byok", "Door camera"))
    videos = {name: _read(kubectl, namespace, "video", name) for name in ("lobby", "door")}
    assert {v["ready"] for v in videos.values()} == {"Sealed"}
    return {"kcvs": kcvs, "videos": videos}


def _assert_back(admin: client.ApiClient, kubectl: Kubectl, namespace: str, before: dict[str, Any]) -> None:
    """Every account Active on its old key-check value; every Video reads back as it was; what the
    restore brought back is owned by the account objects again (garbage collection works)."""
    for name, kcv in before["kcvs"].items():
        account = tenant.wait_condition(
            admin, namespace, name, "Ready", "True", timeout=WITHIN_ONE_INTERVAL + 20
        )
        assert account["status"]["accountKey"]["keyCheckValue"] == kcv, name
        secret = client.CoreV1Api(admin).read_namespaced_secret(f"{name}-account-key", namespace)
        assert [o.uid for o in secret.metadata.owner_references] == [account["metadata"]["uid"]]
        assert secret.metadata.annotations[labels.ANNOTATION_ACCOUNT_ID] == tenant.account_id(account)
    for name, was in before["videos"].items():

        def reads_back(video: str = name, content: dict[str, Any] = was) -> bool:
            return _read(kubectl, namespace, "video", video) == content

        helpers.eventually(reads_back, timeout=20)
    uids = {
        a["metadata"]["name"]: a["metadata"]["uid"]
        for a in helpers.custom(admin).list_namespaced_custom_object(
            "videoanalyzer.io", "v1alpha1", namespace, "videoanalyzeraccounts"
        )["items"]
    }

    def data_owned() -> bool:
        sealed = helpers.custom(admin).list_namespaced_custom_object(
            "internal.videoanalyzer.io", "v1alpha1", namespace, "sealedobjects"
        )["items"]
        owners = {
            s["spec"]["name"]: [o["uid"] for o in s["metadata"].get("ownerReferences") or ()] for s in sealed
        }
        return owners == {"lobby": [uids["studio"]], "door": [uids["byok"]]}

    helpers.eventually(data_owned, timeout=30)


def _annotate(kubectl: Kubectl, namespace: str, annotation: str, value: str) -> None:
    """What a person runs: kubectl annotate, on account studio."""
    kubectl(
        "-n", namespace, "annotate", "--overwrite", "videoanalyzeraccount", "studio", f"{annotation}={value}"
    )


def _account_key_secrets(admin: client.ApiClient, namespace: str) -> list[str]:
    found = client.CoreV1Api(admin).list_namespaced_secret(
        namespace, label_selector=labels.ACCOUNT_KEY_SELECTOR
    )
    return sorted(s.metadata.name for s in found.items)


def test_a_restore_in_velero_order_brings_every_account_and_video_back(
    admin: client.ApiClient, kubectl: Kubectl, namespace: str, tenant_with_data: dict[str, Any]
) -> None:
    saved = backups.take(kubectl, namespace)
    backups.delete_namespace(admin, namespace)
    saved.restore(kubectl)
    _assert_back(admin, kubectl, namespace, tenant_with_data)
    reasons = {e.reason for e in client.CoreV1Api(admin).list_namespaced_event(namespace).items}
    assert "AccountKeyAdopted" in reasons and "AccountKeyCreated" not in reasons


def test_accounts_restored_before_their_secrets_wait_and_never_mint_a_key(
    admin: client.ApiClient, kubectl: Kubectl, namespace: str, tenant_with_data: dict[str, Any]
) -> None:
    """kubectl or a GitOps tool may bring the accounts (and their data) back first: they wait,
    saying so, for as long as it takes, and make no key; the Secrets arriving end the wait."""
    saved = backups.take(kubectl, namespace)
    backups.delete_namespace(admin, namespace)
    saved.restore(
        kubectl, ("VideoAnalyzerAccount", "SealedObject", "KeyVault", "CustomerKey", "ServiceAccount")
    )
    for name in ("studio", "byok"):
        account = tenant.wait_condition(
            admin, namespace, name, "Ready", "False", reason="AccountKeyNotRestored"
        )
        ready = helpers.condition(account, "Ready")
        assert ready is not None and f"Restore {name}-account-key" in ready["message"]
        assert account["status"]["state"] == "Provisioning"
        assert helpers.condition(account, "Reconciling") is not None  # in progress, for kstatus
    time.sleep(WITHIN_ONE_INTERVAL)  # a check interval and more: still no key made
    assert _account_key_secrets(admin, namespace) == []
    door = _read(kubectl, namespace, "video", "door")
    assert door["spec"] is None and door["ready"] == "AccountKeyNotRestored"  # withheld, saying why
    saved.restore(kubectl, ("Secret", "Role", "RoleBinding"))
    _assert_back(admin, kubectl, namespace, tenant_with_data)


def test_without_its_account_id_a_restored_key_is_adopted_only_when_a_person_says_so(
    admin: client.ApiClient, kubectl: Kubectl, namespace: str, tenant_with_data: dict[str, Any]
) -> None:
    """A GitOps repository holds the account as it was written (no account-id annotation) and a
    Secret backup holds its key: the operator opens another account's key only when told. Told,
    the account is back on its key; told instead to start anew (the Secret deleted), it gets a new key."""
    saved = backups.take(kubectl, namespace)
    for account in saved.objects["VideoAnalyzerAccount"]:
        del account["metadata"]["annotations"][labels.ANNOTATION_ACCOUNT_ID]
    backups.delete_namespace(admin, namespace)
    saved.restore(kubectl)
    envelope_ids = {
        name: json.loads(base64.b64decode(saved.only("Secret", f"{name}-account-key")["data"]["envelope"]))[
            "account"
        ]["id"]
        for name in ("studio", "byok")
    }
    for name in ("studio", "byok"):
        account = tenant.wait_condition(
            admin, namespace, name, "Ready", "False", reason="AccountKeyNotAdopted"
        )
        message = helpers.condition(account, "Ready")["message"]  # type: ignore[index]
        command = (
            f"kubectl annotate videoanalyzeraccount {name} -n {namespace} "
            f"videoanalyzer.io/account-id={envelope_ids[name]}"
        )
        assert command in message
        assert helpers.condition(account, "Stalled") is not None
    # studio is that account: a person says so.
    _annotate(kubectl, namespace, labels.ANNOTATION_ACCOUNT_ID, envelope_ids["studio"])
    studio = tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    assert studio["status"]["accountKey"]["keyCheckValue"] == tenant_with_data["kcvs"]["studio"]
    assert _read(kubectl, namespace, "video", "lobby") == tenant_with_data["videos"]["lobby"]
    # byok is a new account under an old name: the old key may be deleted (no account holds it)...
    kubectl("-n", namespace, "delete", "secret", "byok-account-key")
    byok = tenant.wait_condition(admin, namespace, "byok", "Ready", "True")
    assert byok["status"]["accountKey"]["keyCheckValue"] != tenant_with_data["kcvs"]["byok"]
    assert tenant.account_id(byok) != envelope_ids["byok"]
    # ... and the old data stays sealed: nobody reads it with the new key.
    door = _read(kubectl, namespace, "video", "door")
    assert door["spec"] is None and door["ready"] == "AccountNotFound"
    # A Secret an account holds cannot be deleted that way.
    refused = kubectl("-n", namespace, "delete", "secret", "studio-account-key", check=False)
    assert refused.returncode != 0 and "deleting it would lose the key" in refused.stderr


def test_a_lost_key_is_replaced_only_when_a_person_names_it(
    admin: client.ApiClient, kubectl: Kubectl, namespace: str, tenant_with_data: dict[str, Any]
) -> None:
    account = helpers.get(admin, namespace, "VideoAnalyzerAccount", "studio")
    old_id = tenant.account_id(account)
    kubectl("-n", namespace, "delete", "secret", "studio-account-key", AS_GARBAGE_COLLECTOR)  # as if lost
    lost = tenant.wait_condition(admin, namespace, "studio", "Ready", "False", reason="AccountKeyLost")
    assert f"videoanalyzer.io/replace-account-key={old_id}" in helpers.condition(lost, "Ready")["message"]  # type: ignore[index]
    _annotate(kubectl, namespace, labels.ANNOTATION_REPLACE_ACCOUNT_KEY, "not-its-id")
    time.sleep(WITHIN_ONE_INTERVAL)
    assert tenant.wait_condition(admin, namespace, "studio", "Ready", "False", reason="AccountKeyLost")
    _annotate(kubectl, namespace, labels.ANNOTATION_REPLACE_ACCOUNT_KEY, old_id)
    replaced = tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    assert replaced["status"]["accountKey"]["keyCheckValue"] != tenant_with_data["kcvs"]["studio"]
    assert tenant.account_id(replaced) != old_id
    assert labels.ANNOTATION_REPLACE_ACCOUNT_KEY not in replaced["metadata"]["annotations"]
    events = client.CoreV1Api(admin).list_namespaced_event(namespace).items
    told = [e for e in events if e.reason == "AccountKeyReplaced"]
    assert told and told[0].type == "Warning" and old_id in told[0].message
    lobby = _read(kubectl, namespace, "video", "lobby")
    assert lobby["spec"] is None and lobby["ready"] == "AccountNotFound"


def test_the_webhook_lets_the_restore_identity_restore_and_nobody_else(
    admin: client.ApiClient, kubectl: Kubectl, namespace: str, tenant_with_data: dict[str, Any]
) -> None:
    saved = backups.take(kubectl, namespace)
    backups.delete_namespace(admin, namespace)
    secret = saved.only("Secret", "studio-account-key")
    as_admin = kubectl("create", "-f", "-", stdin=json.dumps(secret), check=False)
    assert as_admin.returncode != 0 and "only the video-analyzer operator may change it" in as_admin.stderr
    sealed = saved.objects["SealedObject"][0]
    refused = kubectl("create", "-f", "-", stdin=json.dumps(sealed), check=False)
    assert refused.returncode != 0 and "only the video-analyzer operator writes them" in refused.stderr
    # The backup identity may not put an account's key under another account's name.
    moved = json.loads(json.dumps(secret))
    moved["metadata"]["name"] = "byok-account-key"
    moved["metadata"]["labels"][labels.ACCOUNT] = "byok"
    refused = kubectl("create", f"--as={backups.VELERO}", "-f", "-", stdin=json.dumps(moved), check=False)
    assert refused.returncode != 0
    assert f"holds the account key of account {namespace}/studio" in refused.stderr
    assert f"restored as the key of {namespace}/byok" in refused.stderr
    # Nor restore a key sealed with another cluster's platform keys: it says which step is missing.
    foreign = json.loads(json.dumps(secret))
    document = json.loads(base64.b64decode(foreign["data"]["envelope"]))
    other_cluster = envelope.decode(base64.b64decode(foreign["data"]["envelope"]))
    resealed = envelope.seal(
        os.urandom(256),
        account=other_cluster.account,
        inner=other_cluster.inner,
        outer_key=os.urandom(32),
        outer_key_version=document["outer"]["keyVersion"],
    )
    foreign["data"]["envelope"] = base64.b64encode(envelope.encode(resealed)).decode()
    refused = kubectl("create", f"--as={backups.VELERO}", "-f", "-", stdin=json.dumps(foreign), check=False)
    assert refused.returncode != 0
    assert "PlatformKeyMissing" in refused.stderr and "restore the platform keys" in refused.stderr
    saved.restore(kubectl)
    _assert_back(admin, kubectl, namespace, tenant_with_data)


def test_restored_while_the_key_is_revoked_the_data_is_dark_until_access_returns(
    admin: client.ApiClient,
    kubectl: Kubectl,
    namespace: str,
    keys_namespace: str,
    tenant_with_data: dict[str, Any],
) -> None:
    saved = backups.take(kubectl, namespace)
    rbac = client.RbacAuthorizationV1Api(admin)
    rbac.delete_namespaced_role_binding("read-keys-byok-identity", keys_namespace)  # the grant revoked
    backups.delete_namespace(admin, namespace)
    saved.restore(kubectl)
    locked = tenant.wait_locked(admin, namespace, "byok", "AccessDenied", timeout=WITHIN_ONE_INTERVAL + 20)
    assert locked["status"]["state"] == "KeyInaccessible"
    door = _read(kubectl, namespace, "video", "door")
    assert door["spec"] is None and door["ready"] == "AccessDenied"
    secret = client.CoreV1Api(admin).read_namespaced_secret("byok-account-key", namespace)
    assert [o.uid for o in secret.metadata.owner_references] == [locked["metadata"]["uid"]]  # adopted, locked
    tenant.grant(admin, keys_namespace=keys_namespace, identity_namespace=namespace, identity="byok-identity")
    _assert_back(admin, kubectl, namespace, tenant_with_data)


def test_a_backup_from_before_a_rotation_says_which_version_it_needs(
    admin: client.ApiClient,
    kubectl: Kubectl,
    namespace: str,
    keys_namespace: str,
    tenant_with_data: dict[str, Any],
) -> None:
    saved = backups.take(kubectl, namespace)  # byok wrapped by kek version 1
    tenant.put_key_version(admin, keys_namespace, "kek", 2, tenant.rsa_pem(2048))
    tenant.wait_wrapped_by(admin, namespace, "byok", keyVersion="2")
    client.CoreV1Api(admin).patch_namespaced_secret(
        "kek-v1", keys_namespace, {"metadata": {"annotations": {"videoanalyzer.io/key-enabled": "false"}}}
    )
    backups.delete_namespace(admin, namespace)
    saved.restore(kubectl)
    locked = tenant.wait_locked(admin, namespace, "byok", "KeyDisabled", timeout=WITHIN_ONE_INTERVAL + 20)
    message = helpers.condition(locked, "KeyInaccessible")["message"]  # type: ignore[index]
    assert "wrapped by version 1: enable (or restore) that version" in message
    client.CoreV1Api(admin).patch_namespaced_secret(
        "kek-v1", keys_namespace, {"metadata": {"annotations": {"videoanalyzer.io/key-enabled": "true"}}}
    )
    _assert_back(admin, kubectl, namespace, tenant_with_data)
    assert tenant.wait_wrapped_by(admin, namespace, "byok", keyVersion="2")  # re-wrapped to the current one
