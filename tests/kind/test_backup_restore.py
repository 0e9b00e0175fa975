"""Backups that come back, with real Velero on kind: Velero and its S3 plugin built from their Go
modules, backing up to versitygw (an S3 object store, also built here) with Velero's default
settings. A tenant's namespaces are backed up, deleted and restored into the same cluster; then the
platform keys and the tenant move to a second kind cluster. Each ends with every account Active on
its old key-check value and every Video reading back as it was, and the object store never holds
a byte of plaintext.

The tests run in file order, as one story.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from tests import helpers
from tests.integration import tenant
from vaopdev import kindcluster, velero

SETTINGS = {"operator.checkInterval": "5", "operator.gracePeriod": "30"}
TENANT, KEYS = "shop", "shop-keys"
TITLES = {"lobby": "Lobby camera, ground floor", "door": "Door camera, loading bay"}
SECOND_CLUSTER = "video-analyzer-b"


@pytest.fixture(scope="module")
def store() -> Iterator[velero.ObjectStore]:
    started = velero.ObjectStore().start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def release(kind_cluster: kindcluster.Cluster) -> Iterator[kindcluster.Cluster]:
    kind_cluster.helm("uninstall", kindcluster.RELEASE, "-n", kindcluster.NAMESPACE, "--wait", check=False)
    for namespace in (TENANT, KEYS):
        kind_cluster.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait", timeout=180)
    kind_cluster.install(values=SETTINGS)
    kind_cluster.wait_for_data_api()
    yield kind_cluster
    kind_cluster.helm("uninstall", kindcluster.RELEASE, "-n", kindcluster.NAMESPACE, "--wait", check=False)


@pytest.fixture(scope="module")
def backups(release: kindcluster.Cluster, store: velero.ObjectStore) -> Iterator[velero.Velero]:
    installed = velero.install(release, store)
    yield installed
    installed("uninstall", "--force", "--wait", check=False, timeout=300)


@pytest.fixture(scope="module")
def before(release: kindcluster.Cluster, admin: client.ApiClient) -> dict[str, Any]:
    """The tenant: studio on the system key and byok on a customer key (kubernetes provider, its key
    Secrets and grant in shop-keys), a Video on each, an AccessPolicy; what they read as."""
    for namespace in (TENANT, KEYS):
        release.kubectl("create", "namespace", namespace)
    kcvs = tenant.system_and_customer_key_accounts(admin, TENANT, KEYS)
    for video, account_name in (("lobby", "studio"), ("door", "byok")):
        release.kubectl("apply", "-f", "-", stdin=_video(video, account_name))
    return {"kcvs": kcvs, "videos": {v: _read(release, TENANT, v) for v in TITLES}}


def _video(name: str, account: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "data.videoanalyzer.io/v1alpha1",
            "kind": "Video",
            "metadata": {"name": name, "namespace": TENANT, "labels": {"camera": name}},
            "spec": {"accountName": account, "title": TITLES[name], "archival": {"retentionPeriod": "P30D"}},
        }
    )


def _read(cluster: kindcluster.Cluster, namespace: str, name: str) -> dict[str, Any]:
    obj = json.loads(cluster.kubectl("-n", namespace, "get", "video", name, "-o", "json").stdout)
    meta = obj["metadata"]
    return {
        "metadata": {k: meta.get(k) for k in ("name", "uid", "labels", "annotations")},
        "spec": obj.get("spec"),
    }


def _completed(run: velero.Velero, kind: str, name: str) -> dict[str, Any]:
    """The Backup or Restore once finished: Completed, with no errors."""
    found: dict[str, Any] = json.loads(run(kind, "get", name, "-o", "json").stdout)
    status = found.get("status") or {}
    if status.get("phase") != "Completed" or status.get("errors"):
        details = run(kind, "describe", name, "--details", check=False).stdout
        pytest.fail(f"{kind} {name}: {status}\n{details}")
    return found


def _delete_namespaces(cluster: kindcluster.Cluster, *names: str) -> None:
    for name in names:
        cluster.kubectl("delete", "namespace", name, "--wait", timeout=240)


def _assert_back(cluster: kindcluster.Cluster, admin: client.ApiClient, was: dict[str, Any]) -> None:
    for name, kcv in was["kcvs"].items():
        account = tenant.wait_condition(admin, TENANT, name, "Ready", "True", timeout=90)
        assert account["status"]["accountKey"]["keyCheckValue"] == kcv, name
        secret = client.CoreV1Api(admin).read_namespaced_secret(f"{name}-account-key", TENANT)
        assert [o.uid for o in secret.metadata.owner_references] == [account["metadata"]["uid"]]
    cluster.wait_for_data_api()
    for video, content in was["videos"].items():
        helpers.eventually(lambda v=video, c=content: _read(cluster, TENANT, v) == c, timeout=60)  # type: ignore[misc]


def test_a_velero_backup_holds_only_sealed_data_and_restores_every_account_on_its_key(
    release: kindcluster.Cluster,
    admin: client.ApiClient,
    backups: velero.Velero,
    store: velero.ObjectStore,
    before: dict[str, Any],
) -> None:
    backups("backup", "create", "shop", "--include-namespaces", f"{TENANT},{KEYS}", "--wait")
    _completed(backups, "backup", "shop")
    held = _tarball_files(store.backup_tarball("shop"))
    everything = b"\n".join(held.values())
    for title in TITLES.values():  # no plaintext anywhere in what reached the object store
        assert title.encode() not in everything
    assert not any("data.videoanalyzer.io" in path for path in held)  # the data API served Velero nothing
    assert any("sealedobjects.internal.videoanalyzer.io" in path for path in held)
    account_keys = {p.rsplit("/", 1)[-1] for p in held if "/secrets/" in p and "account-key" in p}
    assert account_keys == {"studio-account-key.json", "byok-account-key.json"}, sorted(held)
    _delete_namespaces(release, TENANT, KEYS)
    backups("restore", "create", "shop-1", "--from-backup", "shop", "--wait")
    _completed(backups, "restore", "shop-1")
    _assert_back(release, admin, before)


def test_break_glass_opens_the_backup_in_the_object_store(
    release: kindcluster.Cluster, store: velero.ObjectStore, before: dict[str, Any], tmp_path: Path
) -> None:
    """The cluster gone: the backup's tarball and the platform keys are all `vaop recover` needs (the
    tenant's kubernetes-provider key Secrets are in the same backup)."""
    platform = tmp_path / "platform-keys.yaml"
    platform.write_text(release.kubectl(*helpers.platform_key_backup(kindcluster.NAMESPACE)).stdout)
    command = [sys.executable, "-m", "vaop", "recover", str(store.backup_tarball("shop"))]
    command += ["--platform-keys", str(platform), "--out", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    for video, content in before["videos"].items():
        written = yaml.safe_load((tmp_path / "out" / TENANT / "videos" / f"{video}.yaml").read_text())
        assert (
            written["spec"] == content["spec"]
            and written["metadata"]["labels"] == content["metadata"]["labels"]
        )


def test_a_second_cluster_restores_the_same_accounts_keys_and_data(
    release: kindcluster.Cluster, backups: velero.Velero, store: velero.ObjectStore, before: dict[str, Any]
) -> None:
    """Migration: the platform keys first (a backup of their own), then the operator, then the tenant."""
    backups(
        "backup", "create", "platform-keys", "--include-namespaces", kindcluster.NAMESPACE,
        "--selector", "videoanalyzer.io/component=platform-key", "--wait",
    )  # fmt: skip
    _completed(backups, "backup", "platform-keys")
    target = kindcluster.up(install=False, name=SECOND_CLUSTER)
    try:
        target_velero = velero.install(target, store)
        # Velero finds the bucket's backups by itself (its sync runs every minute).
        helpers.eventually(
            lambda: {"shop", "platform-keys"} <= _backup_names(target_velero), timeout=150, interval=5
        )
        target_velero("restore", "create", "keys", "--from-backup", "platform-keys", "--wait")
        _completed(target_velero, "restore", "keys")
        target.install(values=SETTINGS)
        target.wait_for_data_api()  # the apiserver reaches the operator's Services (the docs' step)
        target_velero("restore", "create", "shop", "--from-backup", "shop", "--wait")
        _completed(target_velero, "restore", "shop")
        with config.new_client_from_config(config_file=str(target.kubeconfig)) as target_admin:
            _assert_back(target, target_admin, before)
            # The account keys never left an operator in plaintext: the target's keys are the source's.
            source_keys = _platform_secret(release)
            assert _platform_secret(target) == source_keys
    finally:
        kindcluster.down(SECOND_CLUSTER)


def _backup_names(run: velero.Velero) -> set[str]:
    listed = json.loads(run("backup", "get", "-o", "json").stdout)
    return {b["metadata"]["name"] for b in listed.get("items", [listed]) if b.get("metadata")}


def _platform_secret(cluster: kindcluster.Cluster) -> str:
    secret = json.loads(
        cluster.kubectl(
            "-n", kindcluster.NAMESPACE, "get", "secret", "vaop-infrastructure-key", "-o", "json"
        ).stdout
    )
    return str(base64.b64encode(json.dumps(secret["data"], sort_keys=True).encode()))


def _tarball_files(tarball: Path) -> dict[str, bytes]:
    """Every file of a Velero backup tarball, by its path inside."""
    helpers.eventually(tarball.is_file, timeout=30)
    with tarfile.open(tarball) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}  # type: ignore[union-attr]
