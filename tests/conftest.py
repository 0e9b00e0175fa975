"""The whole session: when the kind tier is to run, its Go-built tools (the node's binaries, Velero,
Prometheus, cert-manager, kube-network-policies, ...) are built in the background at the lowest CPU
priority while the fast tier runs, instead of after it: on a fresh machine that is the largest wait.

A tool some test needs meanwhile is built by whichever process comes first; the other waits on the
build's lock (``binaries.GoTool.ensure``). Set VAOP_PREBUILD=0 to build each when first needed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

from vaopdev import binaries, hostsetup, kindcluster

PREBUILD = pytest.StashKey[subprocess.Popen[bytes]]()


def pytest_collection_finish(session: pytest.Session) -> None:
    wanted = os.environ.get("VAOP_PREBUILD", "1") != "0"
    kind_tier = any(item.get_closest_marker("kind") for item in session.items)
    if not (wanted and kind_tier) or hostsetup.kind_unavailable_reason() is not None:
        return
    if all(tool.directory().is_dir() for tool in binaries.KIND_TOOLS + binaries.BESIDE_TOOLS):
        return
    log = kindcluster.dev_dir() / "prebuild.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    nice = shutil.which("nice") or "/usr/bin/nice"
    with log.open("wb") as output:
        session.config.stash[PREBUILD] = subprocess.Popen(
            [nice, "-n", "19", sys.executable, "-m", "vaopdev", "binaries", "--kind"],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its go builds too are stopped with it
        )
    print(f"\nvaop: building the kind tier's tools in the background (log: {log})", file=sys.stderr)


def pytest_sessionfinish(session: pytest.Session) -> None:
    prebuild = session.config.stash.get(PREBUILD, None)
    if prebuild is not None and prebuild.poll() is None:
        os.killpg(prebuild.pid, signal.SIGTERM)  # a session cut short: redone next time
        prebuild.wait(timeout=30)
