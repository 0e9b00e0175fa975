"""Argo CD on the kind tier, offline: its application-controller, repo-server and Redis, from Argo CD's
own ``manifests/install.yaml`` of the pinned module (the rest of that install, the API server, Dex,
ApplicationSets and notifications, left out), in ``argocd``.

The images are made here, as Argo CD's Dockerfile makes them: ``argocd`` built from the module
(``tools/argocd``, on Go 1.27) with the names it answers to as links, Helm beside it for Helm
sources, on a Debian root filesystem with git, gpg and tini. Redis is Debian's ``redis-server``
from the same root filesystem, under its own name, in place of the Alpine image install.yaml names.
"""

from __future__ import annotations

import json
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import binaries, kindcluster, ociarchive, rootfs

NAMESPACE = "argocd"
IMAGE_REPOSITORY = "quay.io/argoproj/argocd"
REDIS_IMAGE = "docker.io/library/redis:7.0-bookworm"  # the version Debian bookworm ships
# What Argo CD's image installs (git-lfs and kustomize aside), and Redis.
PACKAGES = ["git", "tini", "ca-certificates", "gpg", "gpg-agent", "openssh-client", "redis-server"]
# The components this tier runs, by the name of their objects in install.yaml.
COMPONENTS = ("argocd-application-controller", "argocd-repo-server", "argocd-redis")
# Settings and credentials every component reads.
SHARED = {
    "argocd-cm",
    "argocd-cmd-params-cm",
    "argocd-gpg-keys-cm",
    "argocd-rbac-cm",
    "argocd-ssh-known-hosts-cm",
    "argocd-tls-certs-cm",
    "argocd-secret",
}
CRDS = ("applications.argoproj.io", "appprojects.argoproj.io")
_LINKED_NAMES = (
    "argocd-application-controller",
    "argocd-repo-server",
    "argocd-cmp-server",
    "argocd-git-ask-pass",
    "argocd-k8s-auth",
)

_SCRIPTS = ("gpg-wrapper.sh", "git-verify-wrapper.sh")


def image() -> str:
    return f"{IMAGE_REPOSITORY}:{binaries.ARGOCD.version()}"


def _install_yaml() -> list[dict[str, Any]]:
    return [
        d for d in yaml.safe_load_all((binaries.ARGOCD.source() / "manifests/install.yaml").read_text()) if d
    ]


def image_archives() -> list[Path]:
    """Argo CD's image and Redis' as docker-archive tarballs, made once per version and root filesystem."""
    argocd = binaries.ARGOCD.ensure() / "cmd"
    helm = binaries.HELM.ensure() / "helm"
    source = binaries.ARGOCD.source()
    base = rootfs.debian("argocd", PACKAGES)
    folder = binaries.cache_dir() / f"argocd-image-{binaries.ARGOCD.version()}-{base.stem}"
    made = [folder / "argocd.tar", folder / "redis.tar"]
    if all(archive.is_file() for archive in made):
        return made
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    layer = ociarchive.files_layer(
        partial / "layer.tar",
        {
            "/usr/local/bin/argocd": argocd,
            "/usr/local/bin/helm": helm,
            # What repo-server runs for gpg and commit verification, from the module as the image has them.
            **{f"/usr/local/bin/{script}": source / "hack" / script for script in _SCRIPTS},
        },
        links={
            **{f"/usr/local/bin/{name}": "/usr/local/bin/argocd" for name in _LINKED_NAMES},
            "/etc/ssh/ssh_known_hosts": "/app/config/ssh/ssh_known_hosts",
        },
        empty={"/home/argocd": 0o755, "/app/config/tls": 0o755, "/app/config/gpg/source": 0o755},
    )
    env = [ociarchive.PATH_ENV, "HOME=/home/argocd", "USER=argocd", "GRPC_ENABLE_TXT_SERVICE_CONFIG=false"]
    argocd_image = ociarchive.Image(
        tag=image(), layers=[base, layer], entrypoint=["/usr/bin/tini", "--"], env=env, user="999"
    )
    ociarchive.write(argocd_image, partial / "argocd.tar")
    redis = ociarchive.Image(tag=REDIS_IMAGE, layers=[base], entrypoint=["redis-server"], user="999")
    ociarchive.write(redis, partial / "redis.tar")
    layer.unlink()
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return made


def _kept(document: dict[str, Any]) -> bool:
    name, kind = document["metadata"]["name"], document["kind"]
    if kind == "CustomResourceDefinition":
        return False  # applied on their own, server-side (the Application CRD is too large otherwise)
    if kind == "NetworkPolicy":
        return False  # this cluster enforces policies only in the NetworkPolicy test
    return name in COMPONENTS or name in SHARED or name == "argocd-metrics"


def _offline(document: dict[str, Any], settings: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Images as loaded on the node (never pulled), and ``settings`` (ConfigMap name -> data) merged
    into Argo CD's ConfigMaps."""
    if document["kind"] in ("Deployment", "StatefulSet"):
        pod = document["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            if "redis" in container["image"]:
                container["image"] = REDIS_IMAGE
            container["imagePullPolicy"] = "IfNotPresent"
    if document["kind"] == "ConfigMap" and document["metadata"]["name"] in settings:
        document["data"] = {**(document.get("data") or {}), **settings[document["metadata"]["name"]]}
    if document["kind"] == "Secret" and document["metadata"]["name"] == "argocd-secret":
        # What the API server (not run here) writes on its first start, and the controller reads.
        document["stringData"] = {"server.secretkey": secrets.token_urlsafe(32)}
    return document


def default_project() -> dict[str, Any]:
    """The AppProject ``default``, as the API server (not run here) creates it on its first start."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": "default", "namespace": NAMESPACE},
        "spec": {
            "sourceRepos": ["*"],
            "destinations": [{"server": "*", "namespace": "*"}],
            "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
        },
    }


def manifests(settings: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    """install.yaml's objects for the controller, repo-server and Redis, with ``settings`` in its
    ConfigMaps."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    kept = [_offline(d, settings) for d in _install_yaml() if _kept(d)]
    for document in kept:
        if document["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            document["metadata"]["namespace"] = NAMESPACE
    return [namespace, *kept]


def crds() -> list[dict[str, Any]]:
    return [
        d
        for d in _install_yaml()
        if d["kind"] == "CustomResourceDefinition" and d["metadata"]["name"] in CRDS
    ]


@dataclass(frozen=True)
class ArgoCD:
    cluster: kindcluster.Cluster
    settings: dict[str, dict[str, str]]

    def apply(self, *objects: dict[str, Any], server_side: bool = False) -> None:
        extra = ["--server-side", "--force-conflicts"] if server_side else []
        self.cluster.kubectl(
            "apply", *extra, "-f", "-", stdin="---\n".join(yaml.safe_dump(o) for o in objects)
        )

    def application(self, name: str) -> dict[str, Any]:
        """The Application as Argo CD keeps it (what ``argocd app get`` shows); {} before it exists."""
        found = self.cluster.kubectl("-n", NAMESPACE, "get", "application", name, "-o", "json", check=False)
        return dict(json.loads(found.stdout)) if found.returncode == 0 else {}

    def refresh(self, name: str) -> None:
        """What ``argocd app get --refresh`` asks for: read Git again now, not at the next resync."""
        self.cluster.kubectl(
            "-n",
            NAMESPACE,
            "annotate",
            "--overwrite",
            "application",
            name,
            "argocd.argoproj.io/refresh=normal",
        )

    def delete_with_resources(self, name: str) -> None:
        """Delete an Application and, first, everything it applied (its resources finalizer)."""
        finalizer = {"metadata": {"finalizers": ["resources-finalizer.argocd.argoproj.io"]}}
        self.cluster.kubectl(
            "-n", NAMESPACE, "patch", "application", name, "--type=merge", "-p", json.dumps(finalizer),
            check=False,
        )  # fmt: skip
        self.cluster.kubectl(
            "-n", NAMESPACE, "delete", "application", name, "--ignore-not-found", "--wait", "--timeout=300s",
            timeout=320,
        )  # fmt: skip

    def uninstall(self) -> None:
        self.cluster.kubectl("-n", NAMESPACE, "delete", "applications", "--all", "--wait", timeout=240)
        objects = "---\n".join(yaml.safe_dump(o) for o in manifests(self.settings))
        self.cluster.kubectl("delete", "--ignore-not-found", "--wait", "-f", "-", stdin=objects, timeout=240)


def install(cluster: kindcluster.Cluster, settings: dict[str, dict[str, str]]) -> ArgoCD:
    """The CRDs, then the three components rolled out, with ``settings`` (ConfigMap name -> data:
    argocd-cm, argocd-cmd-params-cm) in Argo CD's ConfigMaps."""
    for archive in image_archives():
        cluster.load_archive(archive)
    argocd = ArgoCD(cluster, settings)
    argocd.apply(*crds(), server_side=True)
    cluster.wait_established(*CRDS)
    argocd.apply(*manifests(settings), default_project())
    for workload in ("deployment/argocd-redis", "deployment/argocd-repo-server",
                     "statefulset/argocd-application-controller"):  # fmt: skip
        cluster.kubectl("-n", NAMESPACE, "rollout", "status", workload, "--timeout=180s", timeout=200)
    return argocd
