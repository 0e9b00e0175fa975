"""The README walk-through's tenant on kind: its examples and the tenant's key command."""

from __future__ import annotations

import os
import subprocess
import sys

from kubernetes import client

from tests import helpers
from vaopdev import binaries, kindcluster

EXAMPLES = binaries.REPO_ROOT / "examples"


def vaop_keys(cluster: kindcluster.Cluster, command: str) -> str:
    """`vaop keys create|rotate` of the walk-through's key, the tenant's command, against the kind cluster."""
    walkthrough_key = ["-n", "tenant-a", "--vault", "tenant-vault", "--name", "account-kek", "--size", "2048"]
    result = subprocess.run(
        [sys.executable, "-m", "vaop", "keys", command, *walkthrough_key],
        env=dict(os.environ, KUBECONFIG=str(cluster.kubeconfig)),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def state(admin: client.ApiClient, namespace: str, name: str) -> tuple[str, str]:
    """An account's (state, Ready reason): ("Active", "Ready"), ("KeyInaccessible", "KeyNotFound"), ..."""
    account = helpers.get(admin, namespace, "VideoAnalyzerAccount", name)
    ready = helpers.condition(account, "Ready") or {}
    return account.get("status", {}).get("state", ""), ready.get("reason", "")
