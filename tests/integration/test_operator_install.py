"""The chart installs with helm, and the operator works with exactly the RBAC the chart grants."""

from __future__ import annotations

import asyncio
import base64
import subprocess
from typing import Any

from kubernetes import client
from kubernetes_asyncio import client as aclient

from tests import helpers
from tests.integration.conftest import Kubectl, OperatorProcess
from vaop import kubeclient, pki
from vaop.admission import tls
from vaopdev import cluster, environment


def test_helm_lint_passes(control_plane: cluster.ControlPlane) -> None:
    assert control_plane.bins is not None
    result = subprocess.run(
        [str(control_plane.bins.helm), "lint", str(environment.CHART_DIR)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_helm_release_is_deployed(kubectl: Kubectl) -> None:
    deployment = kubectl("get", "deployment", "-n", environment.OPERATOR_NAMESPACE, "-o", "name").stdout
    assert "deployment.apps/video-analyzer-operator" in deployment


def test_operator_is_not_cluster_admin(kubectl: Kubectl, operator: OperatorProcess) -> None:
    sa = f"system:serviceaccount:{operator.identity.namespace}:{operator.identity.service_account}"
    for verb, resource in [("delete", "namespaces"), ("create", "clusterrolebindings"), ("delete", "nodes")]:
        answer = kubectl("auth", "can-i", verb, resource, f"--as={sa}", check=False)
        assert answer.stdout.strip() == "no", f"the operator may {verb} {resource}"
    assert (
        kubectl(
            "auth", "can-i", "watch", "videoanalyzeraccounts.videoanalyzer.io", f"--as={sa}"
        ).stdout.strip()
        == "yes"
    )


def test_new_account_gets_a_first_status(
    admin: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    helpers.create(admin, namespace, "VideoAnalyzerAccount", "studio", {"region": "westeurope"})

    def status() -> dict[str, Any] | None:
        account = helpers.get(admin, namespace, "VideoAnalyzerAccount", "studio")
        return account if helpers.condition(account, "Ready") else None

    account = helpers.eventually(status, timeout=30)
    assert account["status"]["observedGeneration"] == account["metadata"]["generation"]
    assert account["status"]["state"] in {"Provisioning", "Active"}
    ready = helpers.condition(account, "Ready")
    assert ready is not None and ready["lastTransitionTime"]


def test_webhook_takes_a_cert_manager_secret(
    admin: client.ApiClient, namespace: str, control_plane: cluster.ControlPlane
) -> None:
    """The Secret cert-manager writes (ca.crt, tls.crt, tls.key) is what the operator serves and registers."""
    ca = pki.make_ca("issuer")
    serving = pki.issue_serving(ca, dns_names=["svc.ns.svc"])
    data = {"ca.crt": ca.cert_pem, "tls.crt": serving.cert_pem, "tls.key": serving.key_pem}
    client.CoreV1Api(admin).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="webhook-tls"),
            type="kubernetes.io/tls",
            data={k: base64.b64encode(v).decode() for k, v in data.items()},
        ),
    )

    async def load() -> tuple[pki.KeyPair, pki.KeyPair]:
        configuration = await kubeclient.load_configuration(str(control_plane.admin_kubeconfig))
        async with aclient.ApiClient(configuration) as api:
            return await tls.load_external(api, namespace=namespace, name="webhook-tls")

    loaded_ca, loaded_serving = asyncio.run(load())
    assert loaded_ca.cert_pem == ca.cert_pem
    assert loaded_serving == serving
