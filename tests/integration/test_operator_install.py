"""The chart installs with helm, and the operator works with exactly the RBAC the chart grants."""

from __future__ import annotations

import subprocess
from typing import Any

from kubernetes import client

from tests import helpers
from tests.integration.conftest import Kubectl, OperatorProcess
from vaop.devcluster import cluster, environment


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
