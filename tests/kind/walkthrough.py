"""The README walk-through's tenant on kind: its examples and the tenant's key command."""

from __future__ import annotations

import os
import subprocess
import sys

from kubernetes import client

from tests import helpers
from vaopdev import binaries, kindcluster

EXAMPLES = binaries.REPO_ROOT / "examples"
# The tenant's folder the GitOps tests put in Git: its namespace, accounts, vault, key and key access.
TENANT_FILES = ("00-namespace.yaml", "10-system-key-account.yaml", "20-keyvault.yaml", "30-customerkey.yaml",
                "35-key-access.yaml", "40-customer-key-account.yaml")  # fmt: skip
KEY_ACCESS = "35-key-access.yaml"


def key_access_without_binding() -> str:
    """The key-access file less its RoleBinding: what a commit revoking the account's access holds."""
    access = (EXAMPLES / KEY_ACCESS).read_text()
    return "---".join(part for part in access.split("---") if "kind: RoleBinding" not in part)


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
