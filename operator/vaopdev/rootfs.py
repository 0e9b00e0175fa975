"""Debian root filesystems made with mmdebstrap from Debian's archive, cached as tarballs.

No container registry is reachable here, so every Debian-based image of the kind tier (the kind
node, kube-proxy, the operator image's base) starts from a root filesystem that mmdebstrap builds
from the Debian archive. A tarball is cached under a name that hashes its release and package list,
so a changed list builds anew; downloaded packages are kept in a shared apt cache, so a rebuild
takes about a minute instead of several.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from . import binaries, hostsetup

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# Documentation, manual pages and translations are never read in a container.
_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")
_OPTIONS = (
    # As kind's and Debian's own images: only what is asked for, no Recommends.
    '--aptopt=APT::Install-Recommends "false"',
    # Merged /usr by symlinks (usr-is-merged), as Debian's images do, not the usrmerge package,
    # which would bring perl along (50 MB).
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
)


def _apt_cache() -> Path:
    path = binaries.cache_dir() / "apt-archives"
    path.mkdir(parents=True, exist_ok=True)
    return path


def path(name: str, packages: list[str]) -> Path:
    """Where the tarball of this root filesystem is cached (its name changes with its inputs)."""
    inputs = f"{SUITE} {MIRROR} {sorted(packages)} {_EXCLUDES} {_OPTIONS}"
    return (
        binaries.cache_dir()
        / "rootfs"
        / f"{name}-{SUITE}-{hashlib.sha256(inputs.encode()).hexdigest()[:12]}.tar"
    )


def debian(name: str, packages: list[str]) -> Path:
    """A tarball of a minimal Debian root filesystem with ``packages`` installed, built when missing."""
    tarball = path(name, packages)
    if tarball.is_file():
        return tarball
    hostsetup.require_commands("mmdebstrap")
    print(f"vaop: building the Debian {SUITE} root filesystem {name} with mmdebstrap...", file=sys.stderr)
    tarball.parent.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial.tar")
    cache = _apt_cache()
    command = [
        "mmdebstrap",
        "--quiet",
        "--variant=minbase",
        *_OPTIONS,
        f"--include={','.join(packages)}",
        *(f"--dpkgopt=path-exclude={pattern}" for pattern in _EXCLUDES),
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        # Keep downloaded .debs between builds (mmdebstrap's documented cache recipe).
        "--skip=essential/unlink",
        '--setup-hook=mkdir -p "$1"/var/cache/apt/archives/',
        f"--setup-hook=sync-in {cache} /var/cache/apt/archives/",
        f"--customize-hook=sync-out /var/cache/apt/archives {cache}",
        SUITE,
        str(partial),
        MIRROR,
    ]
    subprocess.run(command, check=True)
    partial.rename(tarball)
    return tarball


def unpack(tarball: Path, directory: Path) -> None:
    """Extract a root filesystem tarball as root would (owners, modes and device nodes kept)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    subprocess.run(["tar", "-xpf", str(tarball), "-C", str(directory), "--numeric-owner"], check=True)
