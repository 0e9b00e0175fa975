"""Break glass: `vaop recover` opens a backup offline (`kubectl get -o yaml` output here; a Velero
tarball on the kind tier) with the platform keys and each tenant's key: a PEM file, a token of the
tenant's OpenBao, the PIN of its HSM. It writes what the data API served, and touches no cluster."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests import helpers
from tests.integration import softhsm, tenant
from tests.integration.conftest import Kubectl
from tests.integration.test_data_api import POLICY
from tests.integration.test_openbao import transit_vault
from tests.integration.test_pkcs11 import _hsm_vault
from vaop import recovery
from vaopdev import environment, openbao

pytestmark = pytest.mark.usefixtures("operator")
BACKED_UP = ",".join(
    (
        "secrets",
        "videoanalyzeraccounts.videoanalyzer.io",
        "keyvaults.videoanalyzer.io",
        "sealedobjects.internal.videoanalyzer.io",
    )
)


@pytest.fixture
def tenants(admin: client.ApiClient) -> Iterator[dict[str, str]]:
    """One namespace per kind of key: system key, kubernetes provider, OpenBao, HSM."""
    core = client.CoreV1Api(admin)
    made = {
        kind: f"recover-{kind}-{uuid.uuid4().hex[:6]}" for kind in ("system", "kubernetes", "openbao", "hsm")
    }
    for name in made.values():
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield made
    for name in made.values():
        core.delete_namespace(name)


def _video(namespace: str, title: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "data.videoanalyzer.io/v1alpha1",
            "kind": "Video",
            "metadata": {"name": "lobby", "namespace": namespace, "labels": {"site": "hq"}},
            "spec": {"accountName": "studio", "title": title, "description": "Front door"},
        }
    )


def _served(kubectl: Kubectl, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return recovery.manifest(json.loads(kubectl("-n", namespace, "get", kind, name, "-o", "json").stdout))


def _recover(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    offline = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    return subprocess.run(
        [sys.executable, "-m", "vaop", "recover", *arguments, "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**offline, "HOME": str(tmp_path)},  # no ~/.kube either
        check=False,
    )


def test_recover_opens_a_backup_with_every_kind_of_key_offline(  # noqa: PLR0917 (fixtures)
    admin: client.ApiClient,
    kubectl: Kubectl,
    tenants: dict[str, str],
    keys_namespace: str,
    bao_server: openbao.OpenBao,
    softhsm_conf: Path,
    tmp_path: Path,
) -> None:
    tenant.account(admin, tenants["system"], "studio")
    pem = tenant.studio_on_customer_key(admin, tenants["kubernetes"], keys_namespace)
    transit_vault(admin, tenants["openbao"], bao_server)
    tenant.account(admin, tenants["openbao"], "studio", key="key")
    label = f"kek-{uuid.uuid4().hex[:8]}"
    softhsm.add_rsa_version(label, 1)
    _hsm_vault(admin, tenants["hsm"], label)
    tenant.account(admin, tenants["hsm"], "studio", key="key")
    kcvs = {}
    for kind, namespace in tenants.items():
        account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
        kcvs[kind] = account["status"]["accountKey"]["keyCheckValue"]
        kubectl("apply", "-f", "-", stdin=_video(namespace, f"{kind} lobby"))
    kubectl("apply", "-f", "-", stdin=POLICY.format(namespace=tenants["kubernetes"]))
    served = {kind: _served(kubectl, namespace, "video", "lobby") for kind, namespace in tenants.items()}
    policy = _served(kubectl, tenants["kubernetes"], "accesspolicy", "viewers")

    # The backup, as kubectl writes it; the platform keys, as the docs tell a platform team to keep them.
    backups = []
    for kind, namespace in tenants.items():
        backups.append(tmp_path / f"{kind}.yaml")
        backups[-1].write_text(kubectl("-n", namespace, "get", BACKED_UP, "-o", "yaml").stdout)
    platform = tmp_path / "platform-keys.yaml"
    platform.write_text(kubectl(*helpers.platform_key_backup(environment.OPERATOR_NAMESPACE)).stdout)
    (tmp_path / "kek.pem").write_bytes(pem)
    (tmp_path / "bao-token").write_text(bao_server.root_token)
    (tmp_path / "pin").write_text(softhsm.PIN)

    # Without the tenant's PEM that account stays closed, and the others are written all the same.
    partial = _recover(
        tmp_path,
        *map(str, backups),
        "--platform-keys",
        str(platform),
        "--openbao-token-file",
        str(tmp_path / "bao-token"),
        "--pkcs11-pin-file",
        str(tmp_path / "pin"),
    )
    assert partial.returncode == 1, partial.stderr
    assert "--key-pem vault/kek/1=<file>" in partial.stdout
    assert "3 objects written" in partial.stdout

    done = _recover(
        tmp_path,
        *map(str, backups),
        "--platform-keys",
        str(platform),
        "--key-pem",
        f"vault/kek/1={tmp_path / 'kek.pem'}",
        "--openbao-token-file",
        str(tmp_path / "bao-token"),
        "--pkcs11-pin-file",
        str(tmp_path / "pin"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for kind, namespace in tenants.items():
        assert f"{namespace}/studio: account ID" in done.stdout and kcvs[kind] in done.stdout
        written = tmp_path / "out" / namespace / "videos" / "lobby.yaml"
        assert yaml.safe_load(written.read_text()) == served[kind]
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
    written = tmp_path / "out" / tenants["kubernetes"] / "accesspolicies" / "viewers.yaml"
    assert yaml.safe_load(written.read_text()) == policy
    # No key material on the way: neither the account keys nor the tenant's key.
    assert "BEGIN" not in done.stdout + done.stderr
