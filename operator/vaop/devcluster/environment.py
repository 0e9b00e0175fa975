"""Install the operator into a control plane the way a user would, and run it with the chart's identity.

``helm install`` applies the chart (CRDs, ServiceAccount, least-privilege RBAC, Deployment); pods
never start here (no kubelet), so the operator runs as a local process whose kubeconfig carries a
token of the chart's ServiceAccount from the TokenRequest API. A missing RBAC rule therefore fails
here exactly as it would in a cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config

from . import binaries, cluster

CHART_DIR = binaries.REPO_ROOT / "charts" / "video-analyzer-operator"
RELEASE = "vaop"
OPERATOR_NAMESPACE = "vaop-system"
OPERATOR_SERVICE_ACCOUNT = "video-analyzer-operator"


@dataclass(frozen=True)
class OperatorIdentity:
    kubeconfig: Path
    namespace: str
    service_account: str


def admin_api(plane: cluster.ControlPlane) -> client.ApiClient:
    assert plane.admin_kubeconfig is not None
    return config.new_client_from_config(config_file=str(plane.admin_kubeconfig))


def helm_install(
    plane: cluster.ControlPlane, *, namespace: str = OPERATOR_NAMESPACE, values: dict[str, str] | None = None
) -> None:
    assert plane.bins is not None and plane.admin_kubeconfig is not None
    command = [
        str(plane.bins.helm),
        "upgrade",
        "--install",
        RELEASE,
        str(CHART_DIR),
        "--namespace",
        namespace,
        "--create-namespace",
        "--kubeconfig",
        str(plane.admin_kubeconfig),
    ]
    for key, value in (values or {}).items():
        command += ["--set", f"{key}={value}"]
    # Helm keeps caches under HOME; a private one keeps runs independent of the user's helm setup.
    assert plane.workdir is not None
    helm_home = plane.workdir / "helm"
    env = dict(
        os.environ,
        HELM_CACHE_HOME=str(helm_home / "cache"),
        HELM_CONFIG_HOME=str(helm_home / "config"),
        HELM_DATA_HOME=str(helm_home / "data"),
    )
    subprocess.run(command, check=True, env=env, capture_output=True)


def operator_identity(
    plane: cluster.ControlPlane,
    *,
    namespace: str = OPERATOR_NAMESPACE,
    service_account: str = OPERATOR_SERVICE_ACCOUNT,
    hours: int = 24 * 7,
) -> OperatorIdentity:
    """A kubeconfig that authenticates as the chart's ServiceAccount (never as an admin)."""
    assert plane.ca is not None and plane.workdir is not None
    with admin_api(plane) as api:
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=hours * 3600)
        )
        response = client.CoreV1Api(api).create_namespaced_service_account_token(
            service_account, namespace, request
        )
    path = cluster.write_kubeconfig(
        plane.workdir / "operator.kubeconfig",
        cluster.kubeconfig_dict(
            server=plane.server,
            ca_pem=plane.ca.cert_pem,
            user=f"system:serviceaccount:{namespace}:{service_account}",
            token=response.status.token,
        ),
    )
    return OperatorIdentity(path, namespace, service_account)


def operator_command() -> list[str]:
    return [sys.executable, "-m", "vaop", "run"]


def operator_env(identity: OperatorIdentity, **overrides: str) -> dict[str, str]:
    env = dict(os.environ, KUBECONFIG=str(identity.kubeconfig), VAOP_NAMESPACE=identity.namespace)
    env.update(overrides)
    return env
