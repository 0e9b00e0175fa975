"""NetworkPolicy enforced on the kind tier, offline, and a probe to see what it lets through.

The node's CNI (ptp, see ``nodeimage``) enforces nothing; kube-network-policies, built from its Go
module (``tools/kube-network-policies``), does, as users run it beside such a CNI: a DaemonSet on
the host network that queues new connections to pods (nfqueue) and accepts or drops each by the
policies. ``netprobe`` (``tools/netprobe``, our own) runs in Pods to dial an address and say
whether it was open, refused or dropped (a timeout), and serves a port to be dialled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import binaries, kindcluster, ociarchive

PROBE_PORT = 8000
_RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": 65534,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def enforcer_image() -> str:
    return f"registry.k8s.io/networking/kube-network-policies:{binaries.KUBE_NETWORK_POLICIES.version()}"


def probe_image() -> str:
    return f"localhost/vaop/netprobe:{binaries.NETPROBE.version()}"


def _archive(tool: binaries.GoTool, reference: str, binary: str, target: str, *, entrypoint: bool) -> Path:
    """A one-binary image of ``tool``, written once per version; with ``entrypoint``, the binary is
    the image's entrypoint, else the Pod names it (as the enforcer's manifest does)."""
    built = tool.ensure()
    image = ociarchive.FilesImage(
        reference, {target: built / binary}, entrypoint=[target] if entrypoint else []
    )
    return ociarchive.archives(
        binaries.cache_dir() / f"{tool.name}-image-{tool.version()}", {"image.tar": image}
    )[0]


def enforcer_manifests() -> list[dict[str, Any]]:
    """The module's own install.yaml, with the image built here."""
    shipped = (binaries.KUBE_NETWORK_POLICIES.source() / "install.yaml").read_text()
    documents = [d for d in yaml.safe_load_all(shipped) if d]
    for document in documents:
        if document["kind"] == "DaemonSet":
            container = document["spec"]["template"]["spec"]["containers"][0]
            container["image"] = enforcer_image()
            container["imagePullPolicy"] = "Never"
    return documents


@dataclass(frozen=True)
class Network:
    cluster: kindcluster.Cluster

    def start_probe(self, namespace: str, name: str, labels: dict[str, str] | None = None) -> str:
        """A Pod serving ``PROBE_PORT`` (so it can be dialled too), ready; its IP."""
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}},
            "spec": {
                "containers": [
                    {
                        "name": "probe",
                        "image": probe_image(),
                        "imagePullPolicy": "Never",
                        "args": ["serve", str(PROBE_PORT)],
                        "ports": [{"containerPort": PROBE_PORT}],
                        "securityContext": _RESTRICTED,
                    }
                ],
                "terminationGracePeriodSeconds": 0,
            },
        }
        self.cluster.kubectl("apply", "-f", "-", stdin=json.dumps(pod))
        self.cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=90s")
        found = self.cluster.kubectl("-n", namespace, "get", "pod", name, "-o", "jsonpath={.status.podIP}")
        return found.stdout.strip()

    def uninstall(self) -> None:
        """The enforcer gone (it removes its nftables table as it stops): nothing enforced again."""
        documents = "---\n".join(yaml.safe_dump(d) for d in enforcer_manifests())
        self.cluster.kubectl(
            "delete", "-f", "-", "--ignore-not-found", "--wait", stdin=documents, timeout=120
        )

    def dial(self, namespace: str, pod: str, address: str) -> str:
        """``open``, ``refused``, ``timeout`` (dropped) or the error, dialling from ``pod``."""
        result = self.cluster.kubectl(
            "-n", namespace, "exec", pod, "--", "/netprobe", "dial", address, check=False, timeout=30
        )
        return result.stdout.strip() or result.stderr.strip()

    def sources(self, namespace: str, pod: str) -> list[str]:
        """The source addresses of the connections the probe has accepted (its log)."""
        log = self.cluster.kubectl("-n", namespace, "logs", pod).stdout
        return [line.split()[1].rsplit(":", 1)[0] for line in log.splitlines() if line.startswith("from ")]


def install(cluster: kindcluster.Cluster) -> Network:
    """kube-network-policies on the node, enforcing; the probe's image loaded."""
    cluster.load_archive(
        _archive(binaries.KUBE_NETWORK_POLICIES, enforcer_image(), "cmd", "/bin/netpol", entrypoint=False)
    )
    cluster.load_archive(_archive(binaries.NETPROBE, probe_image(), "netprobe", "/netprobe", entrypoint=True))
    documents = "---\n".join(yaml.safe_dump(d) for d in enforcer_manifests())
    cluster.kubectl("apply", "-f", "-", stdin=documents)
    cluster.kubectl(
        "-n",
        "kube-system",
        "rollout",
        "status",
        "daemonset/kube-network-policies",
        "--timeout=120s",
        timeout=140,
    )
    return Network(cluster)
