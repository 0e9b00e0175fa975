"""The cluster tier: a real kind cluster (podman provider) made offline, the operator installed by helm.

``make kind`` = :func:`up`: the node image (nodeimage.py) and the operator image (image.py) are
built or reused, the cluster is created from kind-config.yaml on a podman network of ours (no
lookup and no pull leaves the machine), the operator image is loaded into the node, and the chart
is installed with ``helm install --wait`` so the operator runs as a Pod with in-cluster
configuration, its webhook behind the chart's Service. ``make kind-down`` = :func:`down`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import binaries, image, nodeimage, podman

CLUSTER = "video-analyzer"  # kind-config.yaml's name
CONFIG = binaries.REPO_ROOT / "kind-config.yaml"
CHART_DIR = binaries.REPO_ROOT / "charts" / "video-analyzer-operator"
RELEASE = "vaop"
NAMESPACE = "vaop-system"


def dev_dir() -> Path:
    return Path(os.environ.get("VAOP_DEV_DIR", binaries.REPO_ROOT / ".dev"))


def kubeconfig_path(name: str = CLUSTER) -> Path:
    return dev_dir() / ("kind-kubeconfig" if name == CLUSTER else f"kind-{name}-kubeconfig")


def _run(
    command: Sequence[str], *, check: bool = True, timeout: float = 900, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(command),
        env=podman.environment(),
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command[:3])} ... failed ({result.returncode}):\n{result.stderr[-4000:]}"
        )
    return result


def kind(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run([str(binaries.KIND.ensure() / "kind"), *args], check=check)


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    operator_image: str
    name: str = CLUSTER

    def load_archive(self, archive: Path) -> None:
        """Put a docker-archive image into the node's containerd (what ``kind load`` is for)."""
        kind("load", "image-archive", str(archive), "--name", self.name)

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 120, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return _run(
            [str(binaries.KUBE.ensure() / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            check=check,
            timeout=timeout,
            stdin=stdin,
        )

    def helm(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        helm_home = dev_dir() / "helm"
        os.environ.setdefault("HELM_CACHE_HOME", str(helm_home / "cache"))
        os.environ.setdefault("HELM_CONFIG_HOME", str(helm_home / "config"))
        os.environ.setdefault("HELM_DATA_HOME", str(helm_home / "data"))
        return _run(
            [str(binaries.HELM.ensure() / "helm"), "--kubeconfig", str(self.kubeconfig), *args],
            check=check,
            timeout=timeout,
        )

    def install(
        self,
        *,
        values: dict[str, Any] | None = None,
        upgrade: bool = False,
        wait: str = "5m",
        release: str = RELEASE,
    ) -> None:
        """``helm install`` (or upgrade) of the chart with the loaded image, waiting for readiness."""
        command = ["upgrade" if upgrade else "install", release, str(CHART_DIR), "--namespace", NAMESPACE]
        command += ["--create-namespace", "--wait", "--timeout", wait, *self._chart_values(values)]
        if upgrade:
            command.append("--reuse-values")
        self.helm(*command)

    def render(self, *, values: dict[str, Any] | None = None, release: str = RELEASE) -> str:
        """``helm template`` of the chart as ``install`` would install it (for GitOps tools to apply)."""
        version = binaries.KUBE.version()  # offline, helm assumes a version the chart refuses
        command = ["template", release, str(CHART_DIR), "--namespace", NAMESPACE, "--kube-version", version]
        return self.helm(*command, *self._chart_values(values)).stdout

    def _chart_values(self, values: dict[str, Any] | None) -> list[str]:
        """``--set`` arguments: the loaded image, then ``values`` (lists and objects, a policy's
        peers, as JSON)."""
        repository, tag = self.operator_image.rsplit(":", 1)
        arguments = ["--set", f"image.repository={repository}", "--set", f"image.tag={tag}"]
        for key, value in (values or {}).items():
            arguments += (
                ["--set", f"{key}={value}"]
                if isinstance(value, str)
                else ["--set-json", f"{key}={json.dumps(value)}"]
            )
        return arguments

    def wait_for_data_api(self, *, timeout: float = 90) -> None:
        """The aggregator turns the APIService Available a little after the replicas are ready."""
        deadline = time.monotonic() + timeout
        while (
            "videos"
            not in self.kubectl("api-resources", "--api-group=data.videoanalyzer.io", check=False).stdout
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    "the data API (APIService v1alpha1.data.videoanalyzer.io) did not become available"
                )
            time.sleep(1)

    def wait_established(self, *crds: str, timeout: float = 60) -> None:
        """Until each CRD is Established. Not `kubectl wait --for=condition=Established`: it fails at
        once on a CRD the apiserver has not given a status yet (no conditions to read)."""
        deadline = time.monotonic() + timeout
        while True:
            listed = self.kubectl("get", "crd", *crds, "-o", "json", check=False)
            if listed.returncode == 0 and all(map(_established, _items(json.loads(listed.stdout)))):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRDs {', '.join(crds)} not Established after {timeout:.0f} s")
            time.sleep(1)

    def uninstall(self) -> None:
        self.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait")


def _items(listed: dict[str, Any]) -> list[dict[str, Any]]:
    """The objects of `kubectl get -o json`: a List for several names, the object for one."""
    items: list[dict[str, Any]] = listed.get("items", [listed])
    return items


def _established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def exists(name: str = CLUSTER) -> bool:
    return name in kind("get", "clusters").stdout.split()


def create(name: str = CLUSTER) -> Path:
    """The kind cluster, created when it does not exist yet; returns its kubeconfig. Another name
    than the config's makes a second cluster on the same network (a migration's target, say)."""
    kubeconfig = kubeconfig_path(name)
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    if exists(name):
        kind("export", "kubeconfig", "--name", name, "--kubeconfig", str(kubeconfig))
        return kubeconfig
    podman.ensure_network()
    node = nodeimage.ensure()
    Path("/lib/modules").mkdir(exist_ok=True)  # kind bind-mounts it; this VM's kernel has no modules folder
    started = time.monotonic()
    print(f"vaop: creating the kind cluster {name} from {node}...", file=sys.stderr, flush=True)
    kind(
        "create",
        "cluster",
        "--name",
        name,
        "--config",
        str(CONFIG),
        "--image",
        node,
        "--kubeconfig",
        str(kubeconfig),
        "--wait",
        "3m",
    )
    print(f"vaop: kind cluster ready in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    return kubeconfig


def load(cluster: Cluster, reference: str) -> None:
    """Put an image from podman into the cluster's node."""
    with tempfile.TemporaryDirectory(prefix="vaop-load-") as scratch:
        cluster.load_archive(podman.save(reference, Path(scratch) / "image.tar"))


def wait_for_system_pods(cluster: Cluster, *, timeout: str = "180s") -> None:
    """CoreDNS and the pod network are up (kind's --wait covers only the node)."""
    cluster.kubectl("-n", "kube-system", "rollout", "status", "daemonset/ptp-cni", f"--timeout={timeout}")
    cluster.kubectl(
        "-n", "kube-system", "rollout", "status", "deployment/coredns", f"--timeout={timeout}", timeout=300
    )


def up(*, install: bool = True, name: str = CLUSTER) -> Cluster:
    operator_image = image.ensure()
    kubeconfig = create(name)
    cluster = Cluster(kubeconfig, operator_image, name)
    load(cluster, operator_image)
    wait_for_system_pods(cluster)
    if install:
        installed = cluster.helm("status", RELEASE, "--namespace", NAMESPACE, check=False).returncode == 0
        cluster.install(upgrade=installed)
        cluster.wait_for_data_api()
    return cluster


def down(name: str = CLUSTER) -> None:
    """Delete the cluster; the network too once no cluster is left on it."""
    built = binaries.KIND.path("kind").is_file()
    if built and exists(name):
        kind("delete", "cluster", "--name", name)
    kubeconfig_path(name).unlink(missing_ok=True)
    others = built and bool(kind("get", "clusters").stdout.split())
    if not others and podman.run("network", "exists", podman.NETWORK, check=False).returncode == 0:
        podman.run("network", "rm", podman.NETWORK, check=False)
