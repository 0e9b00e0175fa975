"""Rotating the platform's own keys on the real control plane: `vaop platform rotate` makes a new
version current, the leader moves every envelope onto it (the outer layer resealed for the
infrastructure key, the account key re-wrapped for the system key) with the same account keys and
data, `vaop platform status` and the metric count what each version still holds, and an old version
is retired only once nothing uses it.

These tests change the session's platform keys, so they run last (``changes_platform_keys``)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
import yaml
from kubernetes import client

from tests import helpers
from tests.integration import kills, tenant
from tests.integration.conftest import WITHIN_ONE_INTERVAL, Kubectl, OperatorProcess
from vaop import labels, platformkeys
from vaop.crypto import envelope
from vaopdev import cluster, environment

pytestmark = [pytest.mark.usefixtures("operator"), pytest.mark.changes_platform_keys]
NAMESPACE = environment.OPERATOR_NAMESPACE


def _platform(control_plane: cluster.ControlPlane, *args: str, ok: bool = True) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "vaop", "platform", *args, "-n", NAMESPACE],
        env={"KUBECONFIG": str(control_plane.admin_kubeconfig)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode == 0) == ok, result.stderr
    return result.stdout if ok else result.stderr


def _envelopes(admin: client.ApiClient) -> list[envelope.Envelope]:
    """Every account-key Secret's envelope in the cluster (other tests' leftovers included)."""
    found = client.CoreV1Api(admin).list_secret_for_all_namespaces(label_selector=labels.ACCOUNT_KEY_SELECTOR)
    return [envelope.decode(base64.b64decode(s.data[labels.ENVELOPE_DATA_KEY])) for s in found.items]


def _all_on(admin: client.ApiClient, key: str, version: str) -> bool:
    used = platformkeys.usage(_envelopes(admin))
    return all(v == version for (k, v), count in used.items() if k == key and count)


def _system_versions(admin: client.ApiClient) -> list[tuple[int, client.V1Secret]]:
    found = client.CoreV1Api(admin).list_namespaced_secret(
        NAMESPACE, label_selector=f"videoanalyzer.io/key-name={platformkeys.SYSTEM_KEY_NAME}"
    )
    return [(int(s.metadata.labels["videoanalyzer.io/key-version"]), s) for s in found.items]


def _status_rows(control_plane: cluster.ControlPlane) -> dict[tuple[str, str], list[str]]:
    lines = _platform(control_plane, "status").splitlines()
    return {(row[0], row[1]): row for row in (line.split() for line in lines[1:])}


def _video(kubectl: Kubectl, namespace: str, name: str, account: str) -> dict[str, object]:
    document = {
        "apiVersion": "data.videoanalyzer.io/v1alpha1",
        "kind": "Video",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"accountName": account, "title": f"{name} camera"},
    }
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(document))
    return dict(json.loads(kubectl("-n", namespace, "get", "video", name, "-o", "json").stdout)["spec"])


def _reads_back(kubectl: Kubectl, namespace: str, name: str, spec: dict[str, object]) -> bool:
    found = json.loads(kubectl("-n", namespace, "get", "video", name, "-o", "json").stdout)
    return dict(found.get("spec") or {}) == spec


def test_both_platform_keys_rotate_every_envelope_moves_and_old_versions_retire_when_unused(
    admin: client.ApiClient,
    *,
    kubectl: Kubectl,
    namespace: str,
    keys_namespace: str,
    control_plane: cluster.ControlPlane,
    operator: OperatorProcess,
) -> None:
    kcvs = tenant.system_and_customer_key_accounts(admin, namespace, keys_namespace)
    videos = {name: _video(kubectl, namespace, f"{name}-lobby", name) for name in kcvs}
    before = platformkeys.usage(_envelopes(admin))
    infra_old = max(v for (k, v) in before if k == platformkeys.INFRASTRUCTURE)
    system_old = max(v for (k, v) in before if k == platformkeys.SYSTEM)

    operator.stop()  # nothing moves meanwhile: the old version is certainly in use
    said = _platform(control_plane, "rotate", "infrastructure-key")
    infra_new = str(int(infra_old) + 1)
    assert f"infrastructure-key version {infra_new} is current" in said
    refused = _platform(control_plane, "retire", "infrastructure-key", "--version", infra_old, ok=False)
    assert f"infrastructure-key version {infra_old} still holds" in refused
    assert "is the current one" in _platform(
        control_plane, "retire", "infrastructure-key", "--version", infra_new, ok=False
    )
    operator.start()
    helpers.eventually(lambda: _all_on(admin, platformkeys.INFRASTRUCTURE, infra_new), timeout=60)

    said = _platform(control_plane, "rotate", "system-key")
    system_new = str(int(system_old) + 1)
    helpers.eventually(lambda: _all_on(admin, platformkeys.SYSTEM, system_new), timeout=60)
    studio = tenant.wait_wrapped_by(
        admin, namespace, "studio", keyVersion=system_new, timeout=WITHIN_ONE_INTERVAL
    )

    # The same account keys, and the data reads back.
    for name, kcv in kcvs.items():
        account = tenant.wait_condition(admin, namespace, name, "Ready", "True")
        assert account["status"]["accountKey"]["keyCheckValue"] == kcv, name
    assert studio["status"]["accountKey"]["keyCheckValue"] == kcvs["studio"]
    for name, spec in videos.items():

        def reads_back(video: str = f"{name}-lobby", content: dict[str, object] = spec) -> bool:
            return _reads_back(kubectl, namespace, video, content)

        helpers.eventually(reads_back, timeout=10)

    rows = _status_rows(control_plane)
    assert rows[(platformkeys.INFRASTRUCTURE, infra_new)][2] == "yes"
    assert rows[(platformkeys.INFRASTRUCTURE, infra_old)][-1] == "0"
    assert rows[(platformkeys.SYSTEM, system_new)][2] == "yes"
    for key, old in ((platformkeys.INFRASTRUCTURE, infra_old), (platformkeys.SYSTEM, system_old)):
        assert "retired" in _platform(control_plane, "retire", key, "--version", old)
    rows = _status_rows(control_plane)
    assert (platformkeys.INFRASTRUCTURE, infra_old) not in rows and (
        platformkeys.SYSTEM,
        system_old,
    ) not in rows

    # Without the old versions everything still opens: a new Video is sealed and read on each account.
    for name in kcvs:
        spec = _video(kubectl, namespace, f"{name}-door", name)
        assert _reads_back(kubectl, namespace, f"{name}-door", spec)
    for name, spec in videos.items():
        assert _reads_back(kubectl, namespace, f"{name}-lobby", spec)


def test_operator_sigkilled_while_it_moves_200_accounts_onto_new_platform_keys(
    admin: client.ApiClient, namespace: str, control_plane: cluster.ControlPlane, operator: OperatorProcess
) -> None:
    """Both platform keys rotated under 200 SystemKey accounts, the operator killed again and again
    while it moves them: each ends on the new versions, on the account key it always had."""
    names = [f"acct-{i:03d}" for i in range(200)]
    for name in names:
        tenant.account(admin, namespace, name)
    kcvs = {
        name: tenant.wait_condition(admin, namespace, name, "Ready", "True", timeout=120)["status"][
            "accountKey"
        ]["keyCheckValue"]
        for name in names
    }
    _platform(control_plane, "rotate", "infrastructure-key")
    _platform(control_plane, "rotate", "system-key")
    infra = client.CoreV1Api(admin).read_namespaced_secret(platformkeys.INFRASTRUCTURE_SECRET, NAMESPACE)
    infra_new = infra.metadata.annotations[platformkeys.ANNOTATION_CURRENT]
    system_new = max(number for number, _ in _system_versions(admin))

    def pending() -> int:
        found = client.CoreV1Api(admin).list_namespaced_secret(
            namespace, label_selector=labels.ACCOUNT_KEY_SELECTOR
        )
        sealed = [envelope.decode(base64.b64decode(s.data[labels.ENVELOPE_DATA_KEY])) for s in found.items]
        return sum(s.outer_key_version != infra_new or s.inner.key_version != str(system_new) for s in sealed)

    hit = kills.Killer(operator, seed=4).kill_during(15, pending, pause=(0.05, 0.6))
    helpers.eventually(lambda: pending() == 0, timeout=180, interval=1)
    assert hit > 0  # the kills landed while there was work to interrupt
    for name, kcv in kcvs.items():
        assert envelope.key_check_value(tenant.open_account_key(admin, namespace, name)) == kcv
    assert operator.alive()
