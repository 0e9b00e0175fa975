"""Build (once) and locate the control-plane binaries.

kube-apiserver and kube-controller-manager come from the Go module k8s.io/kubernetes, etcd and
etcdctl from go.etcd.io/etcd; the pinned versions live in tools/kube/go.mod and tools/etcd/go.mod.
Binaries are cached outside the repository under ``$VAOP_CACHE_DIR`` (default
``~/.cache/vaop``), in a folder named by version, so a version bump builds anew and a clean
checkout reuses what an earlier run built.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
TOOLS_DIR = REPO_ROOT / "tools"


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    etcdctl: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path
    helm: Path


def cache_dir() -> Path:
    return Path(os.environ.get("VAOP_CACHE_DIR", Path.home() / ".cache" / "vaop"))


def _required_version(go_mod: Path, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.M)
    if not match:
        raise RuntimeError(f"{go_mod} does not require {module}")
    return match.group(1)


def _version_ldflags(version: str) -> str:
    """Stamp the release into the binary, as Kubernetes' own build does, so --version tells the truth."""
    major, minor = version.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={version}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
            f"-X {package}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def _go_build(module_dir: Path, out_dir: Path, packages: list[str], ldflags: str) -> None:
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("Go is needed to build the control plane; install Go 1.26 or newer")
    tmp_dir = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    env = dict(os.environ, CGO_ENABLED="0")
    command = [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp_dir) + "/", *packages]
    subprocess.run(command, cwd=module_dir, env=env, check=True)
    # Rename at the end so an interrupted build never leaves a half-filled cache folder behind.
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp_dir.rename(out_dir)


def _ensure(name: str, out_dir: Path, expected: list[str], build: Callable[[], None]) -> None:
    if all((out_dir / binary).is_file() for binary in expected):
        return
    print(
        f"vaop: building {name} into {out_dir} (first run only; takes several minutes)...",
        file=sys.stderr,
        flush=True,
    )
    build()


def ensure_binaries() -> Binaries:
    """Return the binaries, building whichever is missing from the cache."""
    kube_mod = TOOLS_DIR / "kube" / "go.mod"
    etcd_mod = TOOLS_DIR / "etcd" / "go.mod"
    helm_mod = TOOLS_DIR / "helm" / "go.mod"
    kube_version = _required_version(kube_mod, "k8s.io/kubernetes")
    etcd_version = _required_version(etcd_mod, "go.etcd.io/etcd/server/v3")
    helm_version = _required_version(helm_mod, "helm.sh/helm/v3")

    kube_dir = cache_dir() / f"kube-{kube_version}"
    etcd_dir = cache_dir() / f"etcd-{etcd_version}"
    helm_dir = cache_dir() / f"helm-{helm_version}"

    _ensure(
        f"Kubernetes {kube_version}",
        kube_dir,
        ["kube-apiserver", "kube-controller-manager", "kubectl"],
        lambda: _go_build(
            kube_mod.parent,
            kube_dir,
            [
                "k8s.io/kubernetes/cmd/kube-apiserver",
                "k8s.io/kubernetes/cmd/kube-controller-manager",
                "k8s.io/kubernetes/cmd/kubectl",
            ],
            _version_ldflags(kube_version),
        ),
    )
    _ensure(
        f"etcd {etcd_version}",
        etcd_dir,
        ["etcd", "etcdctl"],
        lambda: _go_build(etcd_mod.parent, etcd_dir, ["./cmd/etcd", "go.etcd.io/etcd/etcdctl/v3"], "-s -w"),
    )
    _ensure(
        f"Helm {helm_version}",
        helm_dir,
        ["helm"],
        lambda: _go_build(
            helm_mod.parent,
            helm_dir,
            ["helm.sh/helm/v3/cmd/helm"],
            f"-s -w -X helm.sh/helm/v3/internal/version.version={helm_version}",
        ),
    )
    return Binaries(
        etcd=etcd_dir / "etcd",
        etcdctl=etcd_dir / "etcdctl",
        kube_apiserver=kube_dir / "kube-apiserver",
        kube_controller_manager=kube_dir / "kube-controller-manager",
        kubectl=kube_dir / "kubectl",
        helm=helm_dir / "helm",
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    for field, path in vars(ensure_binaries()).items():
        print(f"{field}: {path}")
