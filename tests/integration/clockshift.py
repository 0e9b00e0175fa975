"""A process whose wall clock a test skews and steps: clockshift.c, built once with gcc and cached."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from vaopdev import binaries

SOURCE = Path(__file__).with_name("clockshift.c")


def library() -> Path:
    """The shim for LD_PRELOAD, built from clockshift.c into the cache (keyed by the source's hash)."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    built = binaries.cache_dir() / "clockshift" / f"clockshift-{digest}.so"
    if not built.exists():
        built.parent.mkdir(parents=True, exist_ok=True)
        partial = built.with_suffix(".partial")
        subprocess.run(
            ["/usr/bin/gcc", "-O2", "-shared", "-fPIC", "-Wall", "-o", str(partial), str(SOURCE), "-ldl"],
            check=True,
        )
        partial.rename(built)
    return built


class Clock:
    """The offset, in seconds, of a shifted process's wall clock; it follows within a second."""

    def __init__(self, folder: Path) -> None:
        self.file = folder / "clock-offset"
        self.set(0)

    def set(self, seconds: int) -> None:
        partial = self.file.with_suffix(".partial")
        partial.write_text(str(seconds))
        partial.rename(self.file)  # never a half-written number

    def env(self) -> dict[str, str]:
        return {"LD_PRELOAD": str(library()), "CLOCKSHIFT_FILE": str(self.file)}
