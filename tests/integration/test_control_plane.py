"""The local control plane is real Kubernetes: pinned version, RBAC, garbage collection, clean shutdown."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from kubernetes import client

from tests.helpers import eventually
from tests.integration.conftest import Kubectl
from vaopdev import binaries, cluster


def _pinned_kubernetes_version() -> str:
    go_mod = (binaries.TOOLS_DIR / "kube" / "go.mod").read_text()
    match = re.search(r"require k8s.io/kubernetes (v\S+)", go_mod)
    assert match
    return match.group(1)


def test_binaries_report_the_pinned_version(control_plane: cluster.ControlPlane) -> None:
    assert control_plane.bins is not None
    pinned = _pinned_kubernetes_version()
    out = subprocess.run(
        [str(control_plane.bins.kube_apiserver), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"Kubernetes {pinned}"


def test_apiserver_serves_the_pinned_version(kubectl: Kubectl) -> None:
    version = json.loads(kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == _pinned_kubernetes_version()


def test_rbac_is_enforced(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    answer = kubectl(
        "auth",
        "can-i",
        "list",
        "secrets",
        "-n",
        namespace,
        f"--as=system:serviceaccount:{namespace}:nobody",
        check=False,
    )
    assert answer.stdout.strip() == "no"


def test_garbage_collector_deletes_owned_secret(admin: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(admin)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name="owned",
                owner_references=[
                    client.V1OwnerReference(
                        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
                    )
                ],
            ),
            string_data={"k": "v"},
        ),
    )
    core.delete_namespaced_config_map("owner", namespace)

    def secret_gone() -> bool:
        names = [s.metadata.name for s in core.list_namespaced_secret(namespace).items]
        return "owned" not in names

    eventually(secret_gone, timeout=60)


@pytest.mark.usefixtures("operator")
def test_namespace_deletion_completes(admin: client.ApiClient) -> None:
    """With the operator serving its aggregated API: while an APIService is unavailable the namespace
    controller cannot tell what is left in a namespace and never finishes deleting it (run alone,
    without the operator, this waited forever; in the whole suite an earlier test had started it)."""
    core = client.CoreV1Api(admin)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="to-delete")))
    core.create_namespaced_secret("to-delete", client.V1Secret(metadata=client.V1ObjectMeta(name="s")))
    core.delete_namespace("to-delete")

    def gone() -> bool:
        return "to-delete" not in [n.metadata.name for n in core.list_namespace().items]

    eventually(gone, timeout=60)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is not running.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_stop_leaves_no_process_or_folder(control_plane: cluster.ControlPlane) -> None:
    plane = cluster.ControlPlane(bins=control_plane.bins)
    plane.start()
    pids = plane.processes()
    workdir = plane.workdir
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
    plane.stop()
    assert not any(_alive(pid) for pid in pids.values())
    assert workdir is not None and not workdir.exists()


def test_killed_parent_takes_the_control_plane_with_it(tmp_path: Path) -> None:
    """Even SIGKILL of the test process (no cleanup code runs) leaves nothing behind."""
    script = textwrap.dedent(
        """
        import json, sys, time
        from vaopdev import cluster
        plane = cluster.ControlPlane()
        plane.start()
        print(json.dumps({"pids": plane.processes(), "workdir": str(plane.workdir)}), flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    started = json.loads(parent.stdout.readline())
    pids, workdir = started["pids"], Path(started["workdir"])
    assert all(_alive(pid) for pid in pids.values())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids.values())
    # The next start sweeps the folder the killed owner could not remove.
    cluster.remove_abandoned_workdirs()
    assert not workdir.exists()
