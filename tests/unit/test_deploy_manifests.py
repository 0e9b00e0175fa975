"""The GitOps manifests shipped in deploy/ are what docs/gitops.md says they are."""

from __future__ import annotations

from typing import Any

import yaml

from vaopdev import binaries

DEPLOY = binaries.REPO_ROOT / "deploy"


def _documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def test_argocd_cm_installs_the_shipped_health_check_for_every_kind() -> None:
    (config,) = _documents("argocd/argocd-cm.yaml")
    script = (DEPLOY / "argocd" / "health.lua").read_text()
    for kind in ("VideoAnalyzerAccount", "CustomerKey", "KeyVault"):
        assert config["data"][f"resource.customizations.health.videoanalyzer.io_{kind}"] == script
    app_of_apps = (DEPLOY / "argocd" / "application-health.lua").read_text()
    assert config["data"]["resource.customizations.health.argoproj.io_Application"] == app_of_apps
    ignored = yaml.safe_load(
        config["data"][
            "resource.customizations.ignoreDifferences.admissionregistration.k8s.io_ValidatingWebhookConfiguration"
        ]
    )
    assert ignored == {"jqPathExpressions": [".webhooks[]?.clientConfig.caBundle"]}


def test_argocd_applications_put_the_operator_before_the_tenants() -> None:
    waves = {
        d["metadata"]["name"]: int(d["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
        for d in _documents("argocd/applications.yaml")
    }
    assert waves["video-analyzer-operator"] < waves["tenant-a"]


def test_flux_tenants_wait_for_the_operator_and_for_their_objects() -> None:
    documents = {(d["kind"], d["metadata"]["name"]): d for d in _documents("flux/video-analyzer.yaml")}
    tenant = documents[("Kustomization", "tenant-a")]["spec"]
    assert tenant["wait"] is True
    gate = documents[("Kustomization", tenant["dependsOn"][0]["name"])]["spec"]
    assert gate["healthChecks"][0]["kind"] == "HelmRelease"
    assert ("HelmRelease", gate["healthChecks"][0]["name"]) in documents
    for source in (
        tenant["sourceRef"],
        documents[("HelmRelease", "video-analyzer-operator")]["spec"]["chart"]["spec"]["sourceRef"],
    ):
        assert (source["kind"], source["name"]) in documents
