"""The kind node image, assembled offline from Go builds and a Debian root filesystem.

``kind build node-image`` always pulls images from registries, which cannot be reached here, so
this module does by hand what kind's base-image Dockerfile and node-image builder do:

1. a Debian root filesystem with systemd, iptables, nftables, conntrack and runc (mmdebstrap);
2. kind's own node files (entrypoint, systemd units, containerd config) from the kind Go module,
   with the same systemd changes kind's Dockerfile makes;
3. containerd, crictl, the CNI plugins, kubelet, kubeadm and kubectl built from their Go modules;
   runc-norlimit installed as the node's ``runc`` (the VM refuses rlimits; see tools/nodeutil);
4. the images kubeadm asks for (``kubeadm config images list``), written from the Go-built
   binaries and preloaded into the node's containerd, as kind's builder preloads pulled ones;
5. a CNI for one node: kindnetd cannot be built here, so /kind/manifests/default-cni.yaml is a
   DaemonSet that writes a ptp + host-local + portmap configuration for the pod subnet.

The result is imported into podman as ``localhost/vaop/kind-node:<kubernetes version>-<hash>``; the
hash covers every input, so a changed pin or file makes a new image and an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import binaries, ociarchive, podman, rootfs

REPOSITORY = "localhost/vaop/kind-node"
NODE_PACKAGES = [
    "systemd",
    "conntrack",
    "iptables",
    "nftables",
    "iproute2",
    "ethtool",
    "util-linux",
    "mount",
    "kmod",
    "libseccomp2",
    "pigz",
    "bash",
    "ca-certificates",
    "procps",
    "socat",
    "jq",  # kind's createContainer hook (mount-product-files.sh) reads the OCI state with it
    "runc",
]
# kube-proxy programs the node's iptables/nftables from inside its container.
KUBE_PROXY_PACKAGES = ["iptables", "nftables", "conntrack"]
PAUSE_VERSION = "3.10.2"  # what kubeadm v1.37 asks for; the node's containerd uses it as sandbox image

CNI_MANIFEST = """\
# would you kindly template this file   (kind fills in {{ .PodSubnet }} only when it sees this line)
# One-node pod network for the offline kind node (kindnetd cannot be built here): a DaemonSet that
# writes a ptp + host-local + portmap CNI configuration for the cluster's pod subnet, then idles.
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: ptp-cni
  namespace: kube-system
  labels: {k8s-app: ptp-cni}
spec:
  selector:
    matchLabels: {k8s-app: ptp-cni}
  template:
    metadata:
      labels: {k8s-app: ptp-cni}
    spec:
      hostNetwork: true
      priorityClassName: system-node-critical
      tolerations: [{operator: Exists}]
      terminationGracePeriodSeconds: 1
      containers:
        - name: install-cni
          image: registry.k8s.io/kube-proxy:KUBE_VERSION
          imagePullPolicy: Never
          command: [/bin/sh, -c]
          args:
            - printf '%s' "$CNI_CONFIG" > /host/cni/.10-ptp.conflist &&
              mv /host/cni/.10-ptp.conflist /host/cni/10-ptp.conflist &&
              exec sleep infinity
          env:
            - name: CNI_CONFIG
              value: >-
                {"cniVersion": "1.0.0", "name": "ptp", "plugins": [
                {"type": "ptp", "ipMasq": true, "mtu": 1500, "ipam": {"type": "host-local",
                "ranges": [[{"subnet": "{{ .PodSubnet }}"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": true}}]}
          resources:
            requests: {cpu: 5m, memory: 8Mi}
          volumeMounts:
            - {name: cni-config, mountPath: /host/cni}
      volumes:
        - name: cni-config
          hostPath: {path: /etc/cni/net.d, type: DirectoryOrCreate}
"""

STORAGE_MANIFEST = """\
# host-path based default storage class (kind's fallback; its local-path provisioner needs images
# that cannot be pulled here)
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/host-path
"""


def kube_version() -> str:
    return binaries.KUBE_NODE.version()


def kind_files() -> Path:
    """kind's node files (images/base/files) from the kind Go module pinned in tools/kind."""
    return binaries.KIND.source() / "images" / "base" / "files"


def reference() -> str:
    """The node image's name for the current inputs (nothing is built)."""
    digest = hashlib.sha256()
    for tool in binaries.KIND_TOOLS:
        digest.update(f"{tool.name}-{tool.version()}\n".encode())
    for name, packages in (("kind-node", NODE_PACKAGES), ("kube-proxy", KUBE_PROXY_PACKAGES)):
        digest.update(rootfs.path(name, packages).name.encode())  # names that hash the rootfs' inputs
    digest.update(Path(__file__).read_bytes())
    digest.update(Path(ociarchive.__file__).read_bytes())
    return f"{REPOSITORY}:{kube_version()}-{digest.hexdigest()[:10]}"


def ensure() -> str:
    """The node image, built first when podman does not have it yet."""
    image = reference()
    if podman.image_exists(image):
        return image
    started = time.monotonic()
    for tool in (*binaries.KIND_TOOLS, binaries.KUBE):
        tool.ensure()
    print(f"vaop: assembling the kind node image {image}...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="vaop-node-", dir=binaries.cache_dir()) as scratch:
        work = Path(scratch)
        root = work / "rootfs"
        rootfs.unpack(rootfs.debian("kind-node", NODE_PACKAGES), root)
        _install_kind_files(root)
        _configure_systemd(root)
        _install_binaries(root)
        _configure_containerd(root)
        (root / "kind" / "version").write_text(kube_version())
        manifests = root / "kind" / "manifests"
        manifests.mkdir(parents=True, exist_ok=True)
        (manifests / "default-cni.yaml").write_text(CNI_MANIFEST.replace("KUBE_VERSION", kube_version()))
        (manifests / "default-storage.yaml").write_text(STORAGE_MANIFEST)
        _preload(root, _control_plane_images(work / "images"), work)
        tarball = work / "node.tar"
        subprocess.run(["tar", "-cf", str(tarball), "--numeric-owner", "-C", str(root), "."], check=True)
        podman.import_rootfs(
            tarball,
            image,
            changes=[
                'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
                "ENV container=docker",
                "STOPSIGNAL SIGRTMIN+3",
            ],
        )
    podman.remove_other_tags(REPOSITORY, keep=image)
    print(f"vaop: node image ready in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    return image


def _install_kind_files(root: Path) -> None:
    """Copy kind's node files with the modes its Dockerfile gives them (scripts 0755, others 0644)."""
    source = kind_files()
    for path in sorted(source.rglob("*")):
        if path.is_dir():
            continue
        relative = path.relative_to(source)
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        executable = relative.parts[:3] == ("usr", "local", "bin") or relative.parts[:2] == ("kind", "bin")
        target.chmod(0o755 if executable else 0o644)


def _configure_systemd(root: Path) -> None:
    """The systemd changes of kind's base-image Dockerfile."""
    systemd = root / "lib" / "systemd" / "system"
    (systemd / "sysinit.target.wants" / "systemd-tmpfiles-setup.service").unlink(missing_ok=True)
    for pattern in (
        "lib/systemd/system/multi-user.target.wants/*",
        "etc/systemd/system/*.wants/*",
        "lib/systemd/system/local-fs.target.wants/*",
        "lib/systemd/system/sockets.target.wants/*udev*",
        "lib/systemd/system/sockets.target.wants/*initctl*",
        "lib/systemd/system/basic.target.wants/*",
    ):
        for path in root.glob(pattern):
            path.unlink()
    with (root / "etc" / "systemd" / "journald.conf").open("a") as journald:
        journald.write("ReadKMsg=no\n")
    init = root / "usr" / "sbin" / "init"  # /sbin is /usr/sbin on Debian bookworm
    init.unlink(missing_ok=True)
    init.symlink_to("/usr/lib/systemd/systemd")
    subprocess.run(
        [
            "chroot",
            str(root),
            "systemctl",
            "enable",
            "kubelet.service",
            "containerd.service",
            "undo-mount-hacks.service",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["chroot", str(root), "systemctl", "mask", "systemd-binfmt.service"], check=True, capture_output=True
    )
    (root / "etc" / "kubernetes" / "manifests").mkdir(parents=True, exist_ok=True)


def _install(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(0o755)


def _install_binaries(root: Path) -> None:
    for name in binaries.CONTAINERD.outputs:
        _install(binaries.CONTAINERD.path(name), root / "usr/local/bin" / name)
    _install(binaries.CRICTL.path("crictl"), root / "usr/local/bin/crictl")
    for name in binaries.CNI_PLUGINS.outputs:
        _install(binaries.CNI_PLUGINS.path(name), root / "opt/cni/bin" / name)
    # kind's kubelet.service runs /usr/bin/kubelet.
    _install(binaries.KUBE_NODE.path("kubelet"), root / "usr/bin/kubelet")
    _install(binaries.KUBE_NODE.path("kubeadm"), root / "usr/bin/kubeadm")
    _install(binaries.KUBE.path("kubectl"), root / "usr/bin/kubectl")
    # Found first on PATH (/usr/local/sbin), so containerd's shim runs it; it execs Debian's /usr/sbin/runc.
    _install(binaries.NODEUTIL.path("runc-norlimit"), root / "usr/local/sbin/runc")


def _configure_containerd(root: Path) -> None:
    etc = root / "etc" / "containerd"
    spec = json.loads(
        subprocess.run(
            [str(binaries.CONTAINERD.path("ctr")), "oci", "spec"], capture_output=True, check=True
        ).stdout
    )
    # As kind's Dockerfile: no rlimits in the base spec, and the product-files hook.
    spec["process"].pop("rlimits", None)
    hooks = spec.setdefault("hooks", {}).setdefault("createContainer", [])
    hooks.append({"path": "/kind/bin/mount-product-files.sh"})
    (etc / "cri-base.json").write_text(json.dumps(spec, indent=2))
    config = (etc / "config.toml").read_text()
    config = re.sub(
        r'sandbox_image = "[^"]*"', f'sandbox_image = "registry.k8s.io/pause:{PAUSE_VERSION}"', config
    )
    # The VM lacks CAP_SYS_RESOURCE: containerd may only raise oom_score_adj, never lower it.
    config = config.replace("restrict_oom_score_adj = false", "restrict_oom_score_adj = true")
    (etc / "config.toml").write_text(config)


def _control_plane_images(folder: Path) -> list[Path]:
    """docker-archive tarballs of every image kubeadm will ask for, each from a Go-built binary."""
    folder.mkdir(parents=True)
    version = kube_version()
    listed = subprocess.run(
        [
            str(binaries.KUBE_NODE.path("kubeadm")),
            "config",
            "images",
            "list",
            "--kubernetes-version",
            version,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    proxy_base = rootfs.debian("kube-proxy", KUBE_PROXY_PACKAGES)
    sources: dict[
        str, tuple[Path, str, list[Path]]
    ] = {}  # image name -> (binary, path in image, base layers)
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        sources[name] = (
            binaries.KUBE_NODE.path(name) if name == "kube-scheduler" else binaries.KUBE.path(name),
            f"/usr/local/bin/{name}",
            [],
        )
    sources["kube-proxy"] = (binaries.KUBE_NODE.path("kube-proxy"), "/usr/local/bin/kube-proxy", [proxy_base])
    sources["etcd"] = (binaries.ETCD_NODE.path("etcd"), "/usr/local/bin/etcd", [])
    sources["coredns"] = (binaries.COREDNS.path("coredns"), "/coredns", [])
    sources["pause"] = (binaries.NODEUTIL.path("pause"), "/pause", [])
    archives = []
    for tag in listed:
        name = tag.rsplit("/", 1)[-1].split(":")[0]
        if name not in sources:
            raise RuntimeError(f"kubeadm asks for {tag}, which this node image builder cannot make")
        binary, target, base = sources[name]
        layer = ociarchive.files_layer(folder / f"{name}.layer.tar", {target: binary})
        image = ociarchive.Image(tag=tag, layers=[*base, layer], entrypoint=[target])
        archives.append(ociarchive.write(image, folder / f"{name}.tar"))
    return archives


def _preload(root: Path, archives: list[Path], work: Path) -> None:
    """Import the images into the node's /var/lib/containerd with a containerd run on this host,
    as kind's builder does inside its build container (content only; unpacked on first use)."""
    state = Path(tempfile.mkdtemp(prefix="vaop-ctd-"))  # short: socket paths are limited to 108 bytes
    try:
        socket = state / "containerd.sock"
        config = state / "config.toml"
        config.write_text(
            "version = 3\n"
            f'root = "{root / "var/lib/containerd"}"\n'
            f'state = "{state / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", '
            '"io.containerd.cri.v1.images", "io.containerd.nri.v1.nri"]\n'
            f'[grpc]\n  address = "{socket}"\n'
            f'[ttrpc]\n  address = "{state / "ttrpc.sock"}"\n'
        )
        log = (work / "containerd.log").open("wb")
        daemon = subprocess.Popen(
            [str(binaries.CONTAINERD.path("containerd")), "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PATH=os.environ.get("PATH", "")),
        )
        try:
            ctr = [str(binaries.CONTAINERD.path("ctr")), "--address", str(socket), "--namespace", "k8s.io"]
            deadline = time.monotonic() + 30
            while subprocess.run([*ctr, "version"], capture_output=True, check=False).returncode != 0:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"containerd for preloading did not start; see {work / 'containerd.log'}"
                    )
                time.sleep(0.3)
            for archive in archives:
                subprocess.run(
                    [
                        *ctr,
                        "images",
                        "import",
                        "--label=io.cri-containerd.pinned=pinned",
                        "--all-platforms",
                        "--no-unpack",
                        "--digests",
                        str(archive),
                    ],
                    check=True,
                    capture_output=True,
                )
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
            log.close()
    finally:
        shutil.rmtree(state, ignore_errors=True)
