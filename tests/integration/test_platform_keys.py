"""Rotating the platform's own keys on the real control plane: `vaop platform rotate` makes a new
version current, the leader moves every envelope onto it (the outer layer resealed for the
infrastructure key, the account key re-wrapped for the system key) with the same account keys and
data, `vaop platform status` and the metric count what each version still holds, and an old version
is retired only once nothing uses it.

These tests change the session's platform keys, so they run last (``changes_platform_keys``)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from kubernetes import client

from tests import helpers
from tests.integration import softhsm, tenant
from tests.integration.conftest import CHECK_INTERVAL, WITHIN_ONE_INTERVAL, Kubectl, OperatorProcess
from vaop import labels, platformkeys
from vaop.crypto import envelope
from vaop.providers import kubernetes as kubernetes_provider
from vaop.providers import pkcs11 as pkcs11_provider
from vaopdev import cluster, environment, kills

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


def _told(admin: client.ApiClient, about: str) -> dict[str, str] | None:
    """The Events on the infrastructure key's Secret that mention ``about``, by reason."""
    found = client.CoreV1Api(admin).list_namespaced_event(
        NAMESPACE, field_selector=f"involvedObject.name={platformkeys.INFRASTRUCTURE_SECRET}"
    )
    told = {e.reason: e.message for e in found.items if about in e.message}
    return told if "PlatformKeysMoved" in told else None


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
    told = helpers.eventually(lambda: _told(admin, f"system-key version {system_new}"), timeout=30)
    assert {"PlatformKeyRotated", "PlatformKeysMoved"} <= set(told), told
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


# ---- a root of trust outside etcd: the move from Secrets into an HSM --------------------------

PLATFORM_TOKEN = softhsm.PLATFORM_TOKEN
PLATFORM_PIN = softhsm.PLATFORM_PIN
PLATFORM_KEY = "vaop-system-key"


def _states(admin: client.ApiClient, namespace: str) -> dict[str, str]:
    found = helpers.custom(admin).list_namespaced_custom_object(
        "videoanalyzer.io", "v1alpha1", namespace, "videoanalyzeraccounts"
    )
    return {a["metadata"]["name"]: (a.get("status") or {}).get("state", "") for a in found["items"]}


def _etcd(control_plane: cluster.ControlPlane, *args: str) -> bytes:
    assert control_plane.bins is not None
    command = [str(control_plane.bins.etcdctl), f"--endpoints={control_plane.etcd_url}", *args]
    return subprocess.run(command, capture_output=True, check=True).stdout


def _etcd_dump(control_plane: cluster.ControlPlane, folder: Path) -> bytes:
    """All of etcd as a backup of it holds it: compacted to now (old revisions gone, as the
    apiserver's own compaction does every 5 minutes) and snapshotted."""
    revision = json.loads(_etcd(control_plane, "endpoint", "status", "-w", "json"))[0]["Status"]["header"][
        "revision"
    ]
    _etcd(control_plane, "compact", str(revision), "--physical")
    _etcd(control_plane, "defrag")
    _etcd(control_plane, "snapshot", "save", str(folder / "etcd.db"))
    return (folder / "etcd.db").read_bytes()


def _secret_keys(admin: client.ApiClient) -> list[bytes]:
    """Every platform key held in the operator's namespace in the clear: infrastructure key versions
    and the system key versions' private keys (PEM, and DER as protobuf stores bytes)."""
    core = client.CoreV1Api(admin)
    infra = core.read_namespaced_secret(platformkeys.INFRASTRUCTURE_SECRET, NAMESPACE)
    found = [base64.b64decode(v) for v in infra.data.values()]
    for _, secret in _system_versions(admin):
        pem = base64.b64decode(secret.data[kubernetes_provider.DATA_KEY])
        found.append(pem)
        found.append(
            serialization.load_pem_private_key(pem, None).private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    assert all(len(key) == 32 for key in found[: len(infra.data)])
    return found


def _infrastructure_keys_from_the_hsm(admin: client.ApiClient) -> list[bytes]:
    """The infrastructure key versions opened with the HSM, as only the operator can."""
    infra = client.CoreV1Api(admin).read_namespaced_secret(platformkeys.INFRASTRUCTURE_SECRET, NAMESPACE)
    hsm = pkcs11_provider.Pkcs11KeyProvider(
        module=softhsm.MODULE, token_label=PLATFORM_TOKEN, pin=PLATFORM_PIN, identity="the test"
    )
    opened = []
    for stored in infra.data.values():
        record = json.loads(base64.b64decode(stored))
        assert record["root"] == "pkcs11"
        ciphertext = base64.b64decode(record["ciphertext"])
        opened.append(
            asyncio.run(
                hsm.unwrap(record["key"], record["version"], ciphertext, algorithm=record["algorithm"])
            )
        )
    return opened


def test_platform_keys_move_from_secrets_into_an_hsm_and_etcd_then_holds_none_of_them(
    admin: client.ApiClient,
    *,
    kubectl: Kubectl,
    namespace: str,
    keys_namespace: str,
    control_plane: cluster.ControlPlane,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    """The documented move (docs/operations.md#platform-keys-outside-etcd): the HSM token made, the
    operator restarted with platformKeys.provider pkcs11 before the key exists (not ready, saying
    what to make; no account touched), the key made (ready without a restart), every envelope moved
    with no account leaving Active, the Secrets' versions retired: an etcd dump then holds no
    platform key, neither an old one nor the ones in use."""
    kcvs = tenant.system_and_customer_key_accounts(admin, namespace, keys_namespace)
    videos = {name: _video(kubectl, namespace, f"{name}-lobby", name) for name in kcvs}
    in_the_clear = _secret_keys(admin)

    operator.stop()
    operator.settings.update(
        VAOP_PLATFORM_KEYS_PROVIDER="pkcs11",
        VAOP_PLATFORM_PKCS11_MODULE=softhsm.MODULE,
        VAOP_PLATFORM_PKCS11_TOKEN_LABEL=PLATFORM_TOKEN,
        VAOP_PLATFORM_PKCS11_PIN=PLATFORM_PIN,
    )
    operator.start(ready=False)

    def unready_for_the_root() -> tuple[int, str] | None:
        found = operator.readiness()
        return found if "platform-keys" in found[1] else None

    status, text = helpers.eventually(unready_for_the_root, timeout=60)
    assert status == 503
    assert f"the system key '{PLATFORM_KEY}' is not in token '{PLATFORM_TOKEN}'" in text, text
    assert "pkcs11-tool" in text  # what to run
    accounts = helpers.custom(admin).list_namespaced_custom_object(
        "videoanalyzer.io", "v1alpha1", namespace, "videoanalyzeraccounts"
    )["items"]
    time.sleep(2 * CHECK_INTERVAL)
    untouched = helpers.custom(admin).list_namespaced_custom_object(
        "videoanalyzer.io", "v1alpha1", namespace, "videoanalyzeraccounts"
    )["items"]
    assert [a["metadata"]["resourceVersion"] for a in untouched] == [
        a["metadata"]["resourceVersion"] for a in accounts
    ]

    softhsm.add_rsa_version(PLATFORM_KEY, 1, bits=3072, token=PLATFORM_TOKEN, pin=PLATFORM_PIN)

    seen: set[str] = set()

    def moved() -> bool:
        seen.update(_states(admin, namespace).values())
        stored = platformkeys.Stored.of(
            client.CoreV1Api(admin).read_namespaced_secret(platformkeys.INFRASTRUCTURE_SECRET, NAMESPACE)
        )
        used = platformkeys.usage(_envelopes(admin), "pkcs11")
        return stored.root == "pkcs11" and all(
            (k, v) in ((platformkeys.INFRASTRUCTURE, stored.current), (platformkeys.SYSTEM, "1"))
            for (k, v), count in used.items()
            if count
        )

    helpers.eventually(moved, timeout=90, interval=0.5)
    assert seen == {"Active"}  # no account was anything else while it moved
    helpers.eventually(lambda: operator.readiness()[0] == 200, timeout=30)
    for name, kcv in kcvs.items():
        account = tenant.wait_condition(admin, namespace, name, "Ready", "True")
        assert account["status"]["accountKey"]["keyCheckValue"] == kcv, name
    for name, spec in videos.items():

        def reads_back(video: str = f"{name}-lobby", content: dict[str, object] = spec) -> bool:
            return _reads_back(kubectl, namespace, video, content)

        helpers.eventually(reads_back, timeout=30)

    # Retire what etcd held in the clear: the Secrets' system key and the old infrastructure versions.
    rows = _status_rows(control_plane)
    assert rows[(platformkeys.SYSTEM, "1")][2] == "yes"
    for key, version in [k for k in rows if k[0] in (platformkeys.INFRASTRUCTURE, platformkeys.SYSTEM)]:
        if rows[(key, version)][2] != "yes":
            assert "retired" in _platform(control_plane, "retire", key, "--version", version)
    assert _system_versions(admin) == []
    assert "rotate it there" in _platform(control_plane, "rotate", "system-key", ok=False)

    dump = _etcd_dump(control_plane, tmp_path)
    assert b"vaop-infrastructure-key" in dump  # the Secret really is in the dump
    for secret_key in [*in_the_clear, *_infrastructure_keys_from_the_hsm(admin)]:
        assert secret_key not in dump
        assert base64.b64encode(secret_key) not in dump
    # Still everything opens, from the HSM alone: old data and new.
    for name in kcvs:
        spec = _video(kubectl, namespace, f"{name}-door", name)
        assert _reads_back(kubectl, namespace, f"{name}-door", spec)
