"""Flux on the kind tier, offline: source-controller and kustomize-controller built from their Go
modules (``tools/flux-*``), each written as a one-binary image under the name Flux publishes, and
run as Flux's own install runs them (its CRDs from the same modules, its Deployment arguments, the
artifact Service), in ``flux-system``. helm-controller is not here: the module proxy refuses it, so
the operator goes to Git as the rendered chart, which kustomize-controller applies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import binaries, kindcluster, ociarchive

NAMESPACE = "flux-system"
CONTROLLERS = {"source-controller": binaries.FLUX_SOURCE, "kustomize-controller": binaries.FLUX_KUSTOMIZE}
ARTIFACT_PORT = 9090
_RESTRICTED = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def image(controller: str) -> str:
    return f"ghcr.io/fluxcd/{controller}:{CONTROLLERS[controller].version()}"


def image_archives() -> list[Path]:
    """A docker-archive tarball per controller, made once per version."""
    archives = []
    for controller, tool in CONTROLLERS.items():
        built = tool.ensure()
        folder = binaries.cache_dir() / f"{tool.name}-image-{tool.version()}"
        flux_image = ociarchive.FilesImage(
            image(controller),
            {f"/usr/local/bin/{controller}": built / controller},
            entrypoint=[f"/usr/local/bin/{controller}"],
            user="65534:65534",  # Flux's images run as nobody
        )
        archives += ociarchive.archives(folder, {"image.tar": flux_image})
    return archives


def crds() -> list[Path]:
    """Flux's CRDs, as each module ships them (config/crd/bases)."""
    return sorted(
        path for tool in CONTROLLERS.values() for path in (tool.source() / "config/crd/bases").glob("*.yaml")
    )


def _source_controller_rules() -> list[dict[str, Any]]:
    """What source-controller reads and writes (its config/rbac/role.yaml, without Helm's extras)."""
    return [
        {"apiGroups": ["source.toolkit.fluxcd.io"], "resources": ["*"], "verbs": ["*"]},
        {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ]


def _deployment(controller: str, args: list[str], ports: list[dict[str, Any]]) -> dict[str, Any]:
    labels = {"app": controller}
    volumes = [{"name": "tmp", "emptyDir": {}}]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108 (a folder inside the Pod)
    if controller == "source-controller":  # where artifacts are kept and served from
        volumes.append({"name": "data", "emptyDir": {}})
        mounts.append({"name": "data", "mountPath": "/data"})
    container = {
        "name": "manager",
        "image": image(controller),
        "imagePullPolicy": "IfNotPresent",
        "args": ["--log-encoding=json", "--watch-all-namespaces", *args],
        "env": [
            {"name": "RUNTIME_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "TUF_ROOT", "value": "/tmp/.sigstore"},  # noqa: S108
        ],
        "ports": [*ports, {"containerPort": 9440, "name": "healthz"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "healthz"}, "periodSeconds": 2},
        "securityContext": _RESTRICTED,
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": controller, "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": controller,
                    "securityContext": {"fsGroup": 1337},
                    "terminationGracePeriodSeconds": 10,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def manifests() -> list[dict[str, Any]]:
    """The two controllers as Flux installs them: kustomize-controller with cluster-admin (it applies
    whatever the repository holds, as in Flux's own install), source-controller with its role."""
    rbac = "rbac.authorization.k8s.io"
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    ]
    for controller in CONTROLLERS:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": controller, "namespace": NAMESPACE},
            }
        )
    objects += [
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "flux-source-controller"},
            "rules": _source_controller_rules(),
        },
        _cluster_binding("flux-source-controller", "flux-source-controller", "source-controller"),
        _cluster_binding("flux-kustomize-controller", "cluster-admin", "kustomize-controller"),
        _deployment(
            "source-controller",
            [
                "--storage-path=/data",
                "--storage-adv-addr=source-controller.$(RUNTIME_NAMESPACE).svc.cluster.local.",
            ],
            [{"containerPort": ARTIFACT_PORT, "name": "http"}],
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "source-controller", "namespace": NAMESPACE},
            "spec": {
                "selector": {"app": "source-controller"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
        _deployment("kustomize-controller", [], []),
    ]
    return objects


def _cluster_binding(name: str, role: str, account: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}],
    }


@dataclass(frozen=True)
class Flux:
    cluster: kindcluster.Cluster

    def apply(self, *objects: dict[str, Any]) -> None:
        self.cluster.kubectl("apply", "-f", "-", stdin="---\n".join(yaml.safe_dump(o) for o in objects))

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = self.cluster.kubectl("-n", NAMESPACE, "get", kind, name, "-o", "json").stdout
        return dict(json.loads(found))

    def ready(self, kind: str, name: str) -> dict[str, Any] | None:
        """The object's Ready condition, or None before it has one."""
        conditions = (self.get(kind, name).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c.get("type") == "Ready"), None)

    def reconcile(self, kind: str, name: str, token: str) -> None:
        """What ``flux reconcile`` does: the requestedAt annotation, which the controller acts on."""
        self.cluster.kubectl(
            "-n", NAMESPACE, "annotate", "--overwrite", kind, name, f"reconcile.fluxcd.io/requestedAt={token}"
        )

    def delete(self, kind: str, name: str) -> None:
        """Delete and wait until the controller has finished (a Kustomization prunes what it applied)."""
        self.cluster.kubectl(
            "-n",
            NAMESPACE,
            "delete",
            kind,
            name,
            "--ignore-not-found",
            "--wait",
            "--timeout=240s",
            timeout=260,
        )

    def uninstall(self) -> None:
        """Flux's objects first, while its controllers can still remove their finalizers."""
        for kind in ("kustomizations", "gitrepositories"):
            self.cluster.kubectl(
                "-n", NAMESPACE, "delete", kind, "--all", "--wait", "--timeout=240s", timeout=260
            )
        self.cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait", timeout=240)


def install(cluster: kindcluster.Cluster) -> Flux:
    """The CRDs, then both controllers rolled out."""
    for archive in image_archives():
        cluster.load_archive(archive)
    for crd in crds():
        cluster.kubectl("apply", "--server-side", "-f", str(crd))
    flux = Flux(cluster)
    flux.apply(*manifests())
    for controller in CONTROLLERS:
        cluster.kubectl(
            "-n", NAMESPACE, "rollout", "status", f"deployment/{controller}", "--timeout=180s", timeout=200
        )
    return flux
