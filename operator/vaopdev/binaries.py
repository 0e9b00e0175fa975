"""Build (once) and locate the Go-built binaries of the local control plane and of the kind tier.

Every binary comes from a Go module pinned in ``tools/<name>/go.mod`` (Kubernetes, etcd, Helm, kind,
containerd, crictl, the CNI plugins, CoreDNS) or from the project's own Go code (``tools/nodeutil``).
Builds are cached outside the repository under ``$VAOP_CACHE_DIR`` (default ``~/.cache/vaop``), in
a folder named by version, so a version bump builds anew and a clean checkout reuses what an earlier
run built.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = REPO_ROOT / "tools"


def cache_dir() -> Path:
    return Path(os.environ.get("VAOP_CACHE_DIR", Path.home() / ".cache" / "vaop"))


def _strip(version: str) -> str:
    return "-s -w"


def _kubernetes_ldflags(version: str) -> str:
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


@dataclass(frozen=True)
class GoTool:
    """Binaries built from one module under tools/, cached in ``<cache>/<name>-<version>``."""

    name: str
    module: str  # folder under tools/
    pinned: str | None  # the required module whose version names the cache folder; None: our own code
    packages: tuple[str, ...]
    outputs: tuple[str, ...]
    ldflags: Callable[[str], str] = _strip
    tags: str = ""
    env: dict[str, str] = field(default_factory=dict)
    patch: str | None = None  # a diff under the module folder, applied to the pinned module's files

    @property
    def patch_file(self) -> Path | None:
        return self.module_dir / self.patch if self.patch else None

    @property
    def module_dir(self) -> Path:
        return TOOLS_DIR / self.module

    def version(self) -> str:
        if self.pinned is None:
            return "src-" + _source_hash(self.module_dir)
        version = required_version(self.module_dir / "go.mod", self.pinned)
        if self.patch_file is not None:  # patched: a build of its own
            version += "-patched-" + hashlib.sha256(self.patch_file.read_bytes()).hexdigest()[:8]
        return version

    def directory(self) -> Path:
        return cache_dir() / f"{self.name}-{self.version()}"

    def path(self, output: str) -> Path:
        return self.directory() / output

    def source(self) -> Path:
        """The pinned module's source folder in Go's module cache (downloaded first if missing):
        the files it ships beside its code, such as a Helm chart or a node image's files."""
        assert self.pinned is not None, f"{self.name} is our own code, not a pinned module"
        where = ["go", "list", "-m", "-f", "{{.Dir}}", self.pinned]
        env = dict(os.environ, **self.env)
        found = subprocess.run(
            where, cwd=self.module_dir, env=env, capture_output=True, text=True, check=False
        )
        if found.returncode != 0 or not found.stdout.strip():
            subprocess.run(["go", "mod", "download", self.pinned], cwd=self.module_dir, env=env, check=True)
            found = subprocess.run(
                where, cwd=self.module_dir, env=env, capture_output=True, text=True, check=True
            )
        return Path(found.stdout.strip())

    def ensure(self) -> Path:
        """The folder holding the outputs, built first if any is missing. A build holds a lock, so
        a second process asking meanwhile (a test beside the background prebuild) waits for it."""
        out_dir = self.directory()
        if self._built(out_dir):
            return out_dir
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        with (out_dir.parent / f".{out_dir.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._built(out_dir):  # the other process built it meanwhile
                return out_dir
            print(
                f"vaop: building {self.name} {self.version()} into {out_dir} (first run only)...",
                file=sys.stderr,
                flush=True,
            )
            _go_build(self, out_dir)
        return out_dir

    def _built(self, out_dir: Path) -> bool:
        return all((out_dir / binary).is_file() for binary in self.outputs)


def required_version(go_mod: Path, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.M)
    if not match:
        raise RuntimeError(f"{go_mod} does not require {module}")
    return match.group(1)


def _source_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _go_build(tool: GoTool, out_dir: Path) -> None:
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("Go is needed to build the local clusters' binaries; install Go 1.26 or newer")
    tmp_dir = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    env = dict(os.environ, CGO_ENABLED="0", **tool.env)
    command = [go, "build", "-trimpath", "-ldflags", tool.ldflags(tool.version())]
    if tool.tags:
        command += ["-tags", tool.tags]
    if tool.patch_file is not None:
        command += ["-modfile", str(_patched_modfile(tool, tmp_dir / "patched"))]
    command += ["-o", str(tmp_dir) + "/", *tool.packages]
    subprocess.run(command, cwd=tool.module_dir, env=env, check=True)
    shutil.rmtree(tmp_dir / "patched", ignore_errors=True)
    # Rename at the end so an interrupted build never leaves a half-filled cache folder behind.
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp_dir.rename(out_dir)


def _patched_modfile(tool: GoTool, folder: Path) -> Path:
    """A copy of the pinned module with ``tool.patch`` applied, in ``folder``, and a go.mod (for
    ``go build -modfile``) that replaces the module with it. (``-overlay`` cannot: Go refuses to
    overlay files in the module cache.)"""
    assert tool.patch_file is not None and tool.pinned is not None
    copy = folder / "module"
    shutil.copytree(tool.source(), copy)
    for path in [copy, *copy.rglob("*")]:  # the module cache's files are read-only
        path.chmod(path.stat().st_mode | 0o200)
    subprocess.run(["git", "apply", "--unsafe-paths", str(tool.patch_file)], cwd=copy, check=True)
    modfile = folder / "go.mod"
    original = (tool.module_dir / "go.mod").read_text()
    modfile.write_text(f"{original}\nreplace {tool.pinned} => {copy}\n")
    shutil.copyfile(tool.module_dir / "go.sum", folder / "go.sum")
    return modfile


# ---- the local control plane (fast tier and `make up`) ------------------------------------------

KUBE = GoTool(
    "kube",
    "kube",
    "k8s.io/kubernetes",
    (
        "k8s.io/kubernetes/cmd/kube-apiserver",
        "k8s.io/kubernetes/cmd/kube-controller-manager",
        "k8s.io/kubernetes/cmd/kubectl",
    ),
    ("kube-apiserver", "kube-controller-manager", "kubectl"),
    ldflags=_kubernetes_ldflags,
)
ETCD = GoTool(
    "etcd",
    "etcd",
    "go.etcd.io/etcd/server/v3",
    ("./cmd/etcd", "go.etcd.io/etcd/etcdctl/v3"),
    ("etcd", "etcdctl"),
)
HELM = GoTool(
    "helm",
    "helm",
    "helm.sh/helm/v3",
    ("helm.sh/helm/v3/cmd/helm",),
    ("helm",),
    ldflags=lambda version: f"-s -w -X helm.sh/helm/v3/internal/version.version={version}",
)

# ---- the kind tier: a node image assembled from Go builds ---------------------------------------

KUBE_NODE = GoTool(
    "kube-node",
    "kube",
    "k8s.io/kubernetes",
    (
        "k8s.io/kubernetes/cmd/kubelet",
        "k8s.io/kubernetes/cmd/kubeadm",
        "k8s.io/kubernetes/cmd/kube-scheduler",
        "k8s.io/kubernetes/cmd/kube-proxy",
    ),
    ("kubelet", "kubeadm", "kube-scheduler", "kube-proxy"),
    ldflags=_kubernetes_ldflags,
)
KIND = GoTool("kind", "kind", "sigs.k8s.io/kind", ("sigs.k8s.io/kind",), ("kind",))
CONTAINERD = GoTool(
    "containerd",
    "containerd",
    "github.com/containerd/containerd/v2",
    (
        "github.com/containerd/containerd/v2/cmd/containerd",
        "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
        "github.com/containerd/containerd/v2/cmd/ctr",
    ),
    ("containerd", "containerd-shim-runc-v2", "ctr"),
    ldflags=lambda version: f"-s -w -X github.com/containerd/containerd/v2/version.Version={version}",
    # The snapshotters kind never selects, left out as kind's own build does.
    tags="no_aufs no_zfs no_btrfs no_devmapper",
)
CRICTL = GoTool(
    "crictl", "crictl", "sigs.k8s.io/cri-tools", ("sigs.k8s.io/cri-tools/cmd/crictl",), ("crictl",)
)
CNI_PLUGINS = GoTool(
    "cni-plugins",
    "cni-plugins",
    "github.com/containernetworking/plugins",
    tuple(
        f"github.com/containernetworking/plugins/plugins/{p}"
        for p in ("ipam/host-local", "main/loopback", "main/ptp", "meta/portmap")
    ),
    ("host-local", "loopback", "ptp", "portmap"),
)
COREDNS = GoTool("coredns", "coredns", "github.com/coredns/coredns", (".",), ("coredns",))
ETCD_NODE = GoTool("etcd-node", "etcd-node", "go.etcd.io/etcd/server/v3", ("./cmd/etcd",), ("etcd",))
NODEUTIL = GoTool(
    "nodeutil", "nodeutil", None, ("./cmd/pause", "./cmd/runc-norlimit"), ("pause", "runc-norlimit")
)

# ---- backups on the kind tier: Velero, its S3 plugin, and an S3 object store for it ---------------

VELERO = GoTool(
    "velero",
    "velero",
    "github.com/vmware-tanzu/velero",
    ("github.com/vmware-tanzu/velero/cmd/velero",),
    ("velero",),
    ldflags=lambda version: f"-s -w -X github.com/vmware-tanzu/velero/pkg/buildinfo.Version={version}",
)
VELERO_PLUGIN_AWS = GoTool(
    "velero-plugin-for-aws",
    "velero-plugin-for-aws",
    "github.com/vmware-tanzu/velero-plugin-for-aws",
    (
        "github.com/vmware-tanzu/velero-plugin-for-aws/velero-plugin-for-aws",
        "github.com/vmware-tanzu/velero-plugin-for-aws/hack/cp-plugin",
    ),
    ("velero-plugin-for-aws", "cp-plugin"),
)
VERSITYGW = GoTool(
    "versitygw",
    "versitygw",
    "github.com/versity/versitygw",
    ("github.com/versity/versitygw/cmd/versitygw",),
    ("versitygw",),
)
BACKUP_TOOLS = (VELERO, VELERO_PLUGIN_AWS, VERSITYGW)

# ---- Prometheus: promtool tests the chart's alert rules; the server scrapes the operator on kind ----

PROMETHEUS = GoTool(
    "prometheus",
    "prometheus",
    "github.com/prometheus/prometheus",
    ("github.com/prometheus/prometheus/cmd/promtool", "github.com/prometheus/prometheus/cmd/prometheus"),
    ("promtool", "prometheus"),
    # Kubernetes service discovery only (each operator Pod scraped): without the cloud ones (AWS,
    # Azure, GCE, ...) the build is a fraction of the time and size.
    tags="remove_all_sd,enable_kubernetes_sd",
)

# ---- cert-manager: the chart's cert-manager mode on the kind tier ------------------------------------

CERT_MANAGER = GoTool(
    "cert-manager",
    "cert-manager",
    "github.com/cert-manager/cert-manager",
    ("./controller", "./cainjector", "./webhook"),
    ("controller", "cainjector", "webhook"),
    ldflags=lambda version: f"-s -w -X github.com/cert-manager/cert-manager/pkg/util.AppVersion={version}",
)

# ---- NetworkPolicy enforced on the kind tier: kube-network-policies, and a probe to run in Pods ---

KUBE_NETWORK_POLICIES = GoTool(
    "kube-network-policies",
    "kube-network-policies",
    "sigs.k8s.io/kube-network-policies",
    ("sigs.k8s.io/kube-network-policies/cmd",),
    ("cmd",),  # the main package's folder names the binary; the image calls it /bin/netpol
    # Its nftables queue statement sent through the xtables NFQUEUE target: this project's VMs run
    # a kernel built without CONFIG_NFT_QUEUE, which refuses the statement (netlink: ENOENT).
    patch="xt-nfqueue.patch",
)
NETPROBE = GoTool("netprobe", "netprobe", None, (".",), ("netprobe",))

# ---- Flux on the kind tier: source-controller reads a Git repository, kustomize-controller applies it

FLUX_SOURCE = GoTool(
    "flux-source-controller",
    "flux-source-controller",
    "github.com/fluxcd/source-controller",
    ("github.com/fluxcd/source-controller",),
    ("source-controller",),
)
FLUX_KUSTOMIZE = GoTool(
    "flux-kustomize-controller",
    "flux-kustomize-controller",
    "github.com/fluxcd/kustomize-controller",
    ("github.com/fluxcd/kustomize-controller",),
    ("kustomize-controller",),
)
FLUX_TOOLS = (FLUX_SOURCE, FLUX_KUSTOMIZE)

# ---- Argo CD on the kind tier: one binary that acts as the component its name says ---------------

ARGOCD = GoTool(
    "argocd",
    "argocd",
    "github.com/argoproj/argo-cd/v3",
    ("github.com/argoproj/argo-cd/v3/cmd",),
    ("cmd",),  # the main package's folder names the binary; the image calls it /usr/local/bin/argocd
    ldflags=lambda version: (
        f"-s -w -X github.com/argoproj/argo-cd/v3/common.version={version.lstrip('v')}"
        " -X github.com/argoproj/argo-cd/v3/common.buildDate=1970-01-01T00:00:00Z"
    ),
    env={"GOTOOLCHAIN": "go1.27.3"},  # v3.6 names Go 1.27 (the proxy serves that toolchain)
)

# ---- what GitOps tools make of live objects (the GitOps tests) ----------------------------------

GITOPS = GoTool("gitops-check", "gitops", "sigs.k8s.io/cli-utils", (".",), ("gitops",))
# The controller-runtime baseline of bench/scale.py (our own code: cached by its source hash).
NOOP_CONTROLLER = GoTool("noop-controller", "noop-controller", None, (".",), ("noop-controller",))

CONTROL_PLANE_TOOLS = (KUBE, ETCD, HELM)
KIND_TOOLS = (KUBE_NODE, KIND, CONTAINERD, CRICTL, CNI_PLUGINS, COREDNS, ETCD_NODE, NODEUTIL)
# What the kind tier's tests build besides the node: the tools users run beside the operator, in
# the order the tests need them (promtool for a unit test, then the kind files: test_argocd,
# test_backup_restore, test_flux, test_helm_release), so that on a cold run the background build
# has each ready before its file starts rather than building it beside that file.
BESIDE_TOOLS = (
    PROMETHEUS,
    ARGOCD,
    *BACKUP_TOOLS,
    *FLUX_TOOLS,
    CERT_MANAGER,
    KUBE_NETWORK_POLICIES,
    NETPROBE,
)


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    etcdctl: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path
    helm: Path


def ensure_binaries() -> Binaries:
    """The local control plane's binaries, building whichever is missing from the cache."""
    for tool in CONTROL_PLANE_TOOLS:
        tool.ensure()
    return Binaries(
        etcd=ETCD.path("etcd"),
        etcdctl=ETCD.path("etcdctl"),
        kube_apiserver=KUBE.path("kube-apiserver"),
        kube_controller_manager=KUBE.path("kube-controller-manager"),
        kubectl=KUBE.path("kubectl"),
        helm=HELM.path("helm"),
    )
