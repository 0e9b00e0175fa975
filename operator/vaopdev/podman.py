"""Podman on this host, configured for kind without touching the system's own configuration.

Everything runs with ``CONTAINERS_CONF`` pointing at a file of ours, which:
- makes runc-norlimit (tools/nodeutil) the OCI runtime: this VM cannot set rlimits on a container
  process, so the wrapper removes them before the real runc starts the container;
- gives every container a DNS server on the kind network's own bridge where nothing answers, so
  no lookup leaves the machine (the host's resolver could reach the internet).

The kind network is made here first, with a fixed subnet and podman's DNS disabled; kind then uses
it as it is.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from . import binaries, hostsetup

NETWORK = "kind"
SUBNET = "10.89.200.0/24"
GATEWAY = "10.89.200.1"  # the host's end of the bridge; nothing listens on its port 53


def environment() -> dict[str, str]:
    """The environment for podman and kind commands: our containers.conf, kind's podman provider."""
    return dict(
        os.environ,
        CONTAINERS_CONF=str(_containers_conf()),
        KIND_EXPERIMENTAL_PROVIDER="podman",
    )


def _containers_conf() -> Path:
    wrapper = binaries.NODEUTIL.ensure() / "runc-norlimit"
    path = binaries.cache_dir() / "podman" / "containers.conf"
    text = (
        "# Written by vaopdev.podman for the kind tier; see that module for why.\n"
        "[containers]\n"
        f'dns_servers = ["{GATEWAY}"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        "[engine.runtimes]\n"
        f'runc = ["{wrapper}"]\n'
    )
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def run(*args: str, check: bool = True, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    hostsetup.require_commands("podman")
    result = subprocess.run(
        ["podman", *args], env=environment(), input=stdin, capture_output=True, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
    return result


def ensure_network() -> None:
    """The bridge network kind attaches its nodes to: fixed subnet, no DNS of podman's."""
    found = run("network", "inspect", NETWORK, check=False)
    if found.returncode == 0:
        subnets = [s.get("subnet") for n in json.loads(found.stdout) for s in n.get("subnets") or []]
        if SUBNET in subnets:
            return
        raise hostsetup.HostNotReady(
            f"a podman network named {NETWORK} exists with subnets {subnets}, not {SUBNET}: "
            f"remove it (podman network rm {NETWORK}) so it can be made offline-safe"
        )
    run(
        "network",
        "create",
        "--driver=bridge",
        f"--subnet={SUBNET}",
        f"--gateway={GATEWAY}",
        "--disable-dns",
        NETWORK,
    )


def image_exists(reference: str) -> bool:
    return run("image", "exists", reference, check=False).returncode == 0


def import_rootfs(tarball: Path, reference: str, *, changes: list[str]) -> None:
    """``podman import`` a root filesystem as a one-layer image named ``reference``."""
    args = ["import"]
    for change in changes:
        args += ["--change", change]
    run(*args, str(tarball), reference)


def save(reference: str, archive: Path) -> Path:
    run("save", "--format", "docker-archive", "--output", str(archive), reference)
    return archive


def remove_other_tags(repository: str, *, keep: str) -> None:
    """Drop older builds of ``repository`` and dangling layers, so repeated builds do not fill the disk."""
    listed = run("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"reference={repository}")
    for reference in listed.stdout.decode().split():
        if reference != keep:
            run("rmi", reference, check=False)  # an image a container still uses stays
    run("image", "prune", "--force", check=False)
