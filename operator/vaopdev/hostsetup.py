"""What the host must have for the kind tier, and a clear message when it does not.

The Makefile installs the Debian packages (``make system-packages``: podman, runc, mmdebstrap);
this module only checks, so a missing piece fails with what to do instead of a stack trace.
"""

from __future__ import annotations

import os
import shutil

# Command -> the Debian package that provides it.
PACKAGES = {"podman": "podman", "runc": "runc", "mmdebstrap": "mmdebstrap", "tar": "tar"}


class HostNotReady(RuntimeError):
    """The host lacks something the kind tier needs; the message says what and how to fix it."""


def require_commands(*commands: str) -> None:
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        packages = " ".join(sorted({PACKAGES.get(c, c) for c in missing}))
        raise HostNotReady(
            f"{', '.join(missing)} not found: run `make system-packages` (as root), "
            f"or apt-get install {packages}"
        )


def kind_unavailable_reason() -> str | None:
    """Why a kind cluster cannot be made on this host, or None when it can."""
    if os.geteuid() != 0:
        return "the kind tier runs podman as root (rootful kind nodes); this user is not root"
    try:
        require_commands(*PACKAGES)
    except HostNotReady as error:
        return str(error)
    if shutil.which("go") is None:
        return "Go 1.26+ is needed to build kind, containerd and the node's Kubernetes binaries"
    return None
