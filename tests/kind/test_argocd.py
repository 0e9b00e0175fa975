"""Argo CD applying the operator and a tenant from Git, for real: application-controller, repo-server
and Redis from Argo CD's own install.yaml (argocd built from its Go module), the shipped
`deploy/argocd/argocd-cm.yaml` merged into argocd-cm, and `deploy/argocd/applications.yaml` as an
app-of-apps (its URLs pointed at the Git server on the kind network's bridge). The operator's
Application renders the chart from Git with Argo CD's Helm; the tenant's folder is the README
walk-through's examples.

The tests run in file order, as one story: the tenant's wave waits until the operator's Application
is Healthy; the tenant is Degraded while its key is missing or its access is taken away in Git,
with the account's reason in the health Argo CD records, and Healthy once it is back; a manual edit
is reverted; and nothing is synced again and again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests import helpers
from tests.integration import tenant
from tests.kind import walkthrough
from vaopdev import argocd, binaries, gitserver, kindcluster

DEPLOY = binaries.REPO_ROOT / "deploy" / "argocd"
OPERATOR_VALUES = {"operator": {"checkInterval": 5, "gracePeriod": 30}}
CHILDREN = ("video-analyzer-operator", "tenant-a")
QUIET_WINDOW = 120.0  # seconds of watching for syncs nobody asked for


def _settings() -> dict[str, dict[str, str]]:
    """The shipped argocd-cm.yaml, a half-minute resync for the test (the default is 3 minutes), and
    resource health kept in the Application (Argo CD's API server, not run here, serves it otherwise)."""
    (shipped,) = [d for d in yaml.safe_load_all((DEPLOY / "argocd-cm.yaml").read_text()) if d]
    return {
        "argocd-cm": {**shipped["data"], "timeout.reconciliation": "30s"},
        "argocd-cmd-params-cm": {"controller.resource.health.persist": "true"},
    }


@pytest.fixture(scope="module")
def argo(kind_cluster: kindcluster.Cluster) -> Iterator[argocd.ArgoCD]:
    # The chart comes from Git here, not from `helm install`: no release of the other test files.
    kind_cluster.helm("uninstall", kindcluster.RELEASE, "-n", kindcluster.NAMESPACE, "--wait", check=False)
    kind_cluster.kubectl("delete", "namespace", "tenant-a", "--ignore-not-found", "--wait", timeout=180)
    installed = argocd.install(kind_cluster, _settings())
    yield installed
    _delete_applications(installed)  # again, if the last test did not get there
    installed.uninstall()
    for namespace in ("tenant-a", kindcluster.NAMESPACE):  # CreateNamespace's is not pruned
        kind_cluster.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait", timeout=260)
    # The chart keeps its CRDs (crds.keep), and Argo CD honours that: the next file installs anew.
    kind_cluster.kubectl("delete", "-f", str(binaries.REPO_ROOT / "crds"), "--ignore-not-found", "--wait")


def _delete_applications(argo: argocd.ArgoCD) -> None:
    """The root first (it does not own its children's resources), then each child with what it
    applied: the tenant while the operator still runs, then the operator."""
    argo.cluster.kubectl("-n", argocd.NAMESPACE, "delete", "application", "platform", "--ignore-not-found")
    for name in reversed(CHILDREN):
        argo.delete_with_resources(name)


def _applications(url: str, operator_image: str) -> str:
    """The shipped applications.yaml, pointed at the test's Git server and the image loaded on kind."""
    repository, tag = operator_image.rsplit(":", 1)
    documents = [d for d in yaml.safe_load_all((DEPLOY / "applications.yaml").read_text()) if d]
    for document in documents:
        source = document["spec"]["source"]
        source.update(repoURL=url, targetRevision="main")
        if "helm" in source:
            source["helm"]["valuesObject"] = {
                "image": {"repository": repository, "tag": tag},
                **OPERATOR_VALUES,
            }
    return yaml.safe_dump_all(documents)


@pytest.fixture(scope="module")
def repository(git: gitserver.GitServer, kind_cluster: kindcluster.Cluster) -> gitserver.Repository:
    """One repository for all three Applications: the chart as it is in this repo, the walk-through's
    tenant, and the two Applications of applications.yaml for the root to apply."""
    repo = git.repository("argocd-platform")
    chart = kindcluster.CHART_DIR
    files = {f"charts/video-analyzer-operator/{p.relative_to(chart)}": p.read_text()
             for p in chart.rglob("*") if p.is_file()}  # fmt: skip
    files.update(
        {f"tenant-a/{name}": (walkthrough.EXAMPLES / name).read_text() for name in walkthrough.TENANT_FILES}
    )
    files["apps/applications.yaml"] = _applications(repo.url, kind_cluster.operator_image)
    repo.commit(files, "the operator, tenant-a and their Applications")
    return repo


def _root(url: str) -> dict[str, Any]:
    """The app of apps: applies the folder holding the two Applications."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "platform", "namespace": argocd.NAMESPACE},
        "spec": {
            "project": "default",
            "source": {"repoURL": url, "targetRevision": "main", "path": "apps"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": argocd.NAMESPACE},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
        },
    }


def _rolled_out(cluster: kindcluster.Cluster) -> bool:
    """Every replica of the operator's Deployment is of the newest template and ready."""
    found = cluster.kubectl("-n", kindcluster.NAMESPACE, "get", "deployments", "-o", "json").stdout
    deployments = json.loads(found)["items"]
    return bool(deployments) and all(
        (d["status"].get("updatedReplicas"), d["status"].get("readyReplicas")) == (d["spec"]["replicas"],) * 2
        for d in deployments
    )


def _health(argo: argocd.ArgoCD, name: str) -> str:
    return str(((argo.application(name).get("status") or {}).get("health") or {}).get("status", ""))


def _resource_health(argo: argocd.ArgoCD, application: str, kind: str, name: str) -> dict[str, str]:
    """The health Argo CD recorded for one of the Application's resources ({} before it has one)."""
    for resource in (argo.application(application).get("status") or {}).get("resources") or []:
        if (resource.get("kind"), resource.get("name")) == (kind, name):
            return dict(resource.get("health") or {})
    return {}


def _byok_degraded(argo: argocd.ArgoCD, reason: str) -> dict[str, str]:
    """The BYOK account's health in the tenant's Application, asserted Degraded for ``reason``. The
    account may pass through other reasons on the way (VaultNotFound until Argo CD has applied the
    KeyVault beside it), so callers wait for this one; on a timeout the last health is shown."""
    health = _resource_health(argo, "tenant-a", "VideoAnalyzerAccount", "studio-byok")
    assert health.get("status") == "Degraded" and reason in health.get("message", ""), health
    return health


def _synced_at(argo: argocd.ArgoCD, name: str, revision: str) -> bool:
    sync = (argo.application(name).get("status") or {}).get("sync") or {}
    return bool(sync.get("status") == "Synced" and sync.get("revision") == revision)


def test_the_tenant_waits_for_a_healthy_operator_and_is_healthy_only_with_its_accounts(
    argo: argocd.ArgoCD, repository: gitserver.Repository, admin: client.ApiClient
) -> None:
    argo.apply(_root(repository.url))
    seen: list[str] = []  # the operator Application's health, each change
    operator_healthy_at = tenant_created_at = 0.0
    rolled_out = False
    deadline = time.monotonic() + 420
    while not tenant_created_at and time.monotonic() < deadline:
        health = _health(argo, "video-analyzer-operator")
        if health and (not seen or seen[-1] != health):
            seen.append(health)
        if health == "Healthy" and not operator_healthy_at:
            operator_healthy_at = time.monotonic()
        if argo.application("tenant-a"):
            tenant_created_at = time.monotonic()
            rolled_out = _rolled_out(argo.cluster)
        time.sleep(1)
    # Wave 1 is applied only after wave 0 is Healthy: the Deployment rolled out (webhook serving).
    assert tenant_created_at, f"tenant-a was never created; the operator's health went {seen}"
    assert rolled_out, f"tenant-a was created before the operator's replicas were ready; health {seen}"
    assert operator_healthy_at and operator_healthy_at <= tenant_created_at, seen
    assert "Progressing" in seen and seen[-1] == "Healthy", seen
    # The key the CustomerKey names does not exist yet: the account is KeyInaccessible, which Argo CD
    # records, through the shipped health check, as Degraded with the account's reason.
    helpers.eventually(lambda: _byok_degraded(argo, "KeyNotFound"), timeout=180, interval=2)
    assert _health(argo, "tenant-a") == "Degraded"
    assert _resource_health(argo, "tenant-a", "VideoAnalyzerAccount", "studio")["status"] == "Healthy"
    walkthrough.vaop_keys(argo.cluster, "create")
    tenant.wait_wrapped_by(admin, "tenant-a", "studio-byok", keyVersion="1", timeout=60)
    helpers.eventually(lambda: _health(argo, "tenant-a") == "Healthy", timeout=120, interval=2)
    helpers.eventually(lambda: _health(argo, "platform") == "Healthy", timeout=120, interval=2)
    states = {walkthrough.state(admin, "tenant-a", name) for name in ("studio", "studio-byok")}
    assert states == {("Active", "Ready")}


def test_access_taken_away_in_git_degrades_the_tenant_and_coming_back_heals_it(
    argo: argocd.ArgoCD, repository: gitserver.Repository, admin: client.ApiClient
) -> None:
    access = (walkthrough.EXAMPLES / "35-key-access.yaml").read_text()
    revoked = repository.commit(
        {"tenant-a/35-key-access.yaml": walkthrough.key_access_without_binding()}, "revoke studio-byok"
    )
    argo.refresh("tenant-a")
    # Pruned by Argo CD, the binding is gone; the operator's next check locks the account.
    helpers.eventually(
        lambda: walkthrough.state(admin, "tenant-a", "studio-byok") == ("KeyInaccessible", "AccessDenied"),
        timeout=120,
    )
    helpers.eventually(lambda: _byok_degraded(argo, "AccessDenied"), timeout=120, interval=2)
    assert _health(argo, "tenant-a") == "Degraded"
    assert _synced_at(argo, "tenant-a", revoked)  # Git says so: in sync, and not healthy
    helpers.eventually(lambda: _health(argo, "platform") == "Degraded", timeout=120, interval=2)
    restored = repository.commit({"tenant-a/35-key-access.yaml": access}, "give studio-byok its access back")
    argo.refresh("tenant-a")
    helpers.eventually(lambda: _synced_at(argo, "tenant-a", restored), timeout=120, interval=2)
    helpers.eventually(lambda: _health(argo, "tenant-a") == "Healthy", timeout=120, interval=2)
    assert walkthrough.state(admin, "tenant-a", "studio-byok") == ("Active", "Ready")
    helpers.eventually(lambda: _health(argo, "platform") == "Healthy", timeout=120, interval=2)


def test_a_manual_edit_is_reverted(argo: argocd.ArgoCD, admin: client.ApiClient) -> None:
    cluster = argo.cluster
    cluster.kubectl("-n", "tenant-a", "patch", "customerkey", "tenant-key", "--type=merge",
                    "-p", '{"spec": {"keyVersion": "1"}}')  # fmt: skip
    cluster.kubectl("-n", "tenant-a", "delete", "rolebinding", "studio-byok-reads-account-keks")

    def back() -> bool:  # self-heal: Git has keyVersion "" (follow the newest) and the binding
        key = helpers.get(admin, "tenant-a", "CustomerKey", "tenant-key")
        binding = cluster.kubectl("-n", "tenant-a", "get", "rolebinding", "studio-byok-reads-account-keks",
                                  check=False)  # fmt: skip
        return bool(key["spec"]["keyVersion"] == "" and binding.returncode == 0)

    helpers.eventually(back, timeout=120, interval=2)
    helpers.eventually(lambda: _health(argo, "tenant-a") == "Healthy", timeout=180, interval=2)
    assert walkthrough.state(admin, "tenant-a", "studio-byok") == ("Active", "Ready")


def _syncs(argo: argocd.ArgoCD, name: str) -> tuple[int, str]:
    """How many syncs the Application has made (its history) and when the last one started."""
    status = argo.application(name).get("status") or {}
    started = ((status.get("operationState") or {}).get("startedAt")) or ""
    return len(status.get("history") or []), started


def test_nothing_is_synced_again_and_again(argo: argocd.ArgoCD) -> None:
    """With a resync every half minute and self-heal on, two minutes go by without a sync: Argo CD
    finds the live objects as Git has them (the operator's own writes, the webhook's caBundle and the
    statuses, are not drift), and every Application stays Synced and Healthy."""
    names = ("platform", *CHILDREN)
    before = {name: _syncs(argo, name) for name in names}
    reconciled = {name: argo.application(name)["status"]["reconciledAt"] for name in names}
    time.sleep(QUIET_WINDOW)
    for name in names:
        status = argo.application(name)["status"]
        assert status["reconciledAt"] != reconciled[name], f"{name} was not compared with Git again"
        assert (status["sync"]["status"], status["health"]["status"]) == ("Synced", "Healthy"), name
        assert _syncs(argo, name) == before[name], name


def test_deleting_the_applications_removes_the_tenant_then_the_operator_and_keeps_the_crds(
    argo: argocd.ArgoCD,
) -> None:
    cluster = argo.cluster
    _delete_applications(argo)
    gone = lambda: cluster.kubectl("get", "namespace", "tenant-a", check=False).returncode != 0  # noqa: E731
    helpers.eventually(gone, timeout=180, interval=2)  # the tenant folder's Namespace, pruned
    deployments = cluster.kubectl("-n", kindcluster.NAMESPACE, "get", "deployments", "-o", "name").stdout
    assert deployments.strip() == ""
    # The chart marks its CRDs helm.sh/resource-policy=keep (crds.keep): Argo CD leaves them, so no
    # tenant's accounts and wrapped keys go with an Application deleted by mistake.
    crds = cluster.kubectl("get", "crd", "-o", "name").stdout.split()
    assert "customresourcedefinition.apiextensions.k8s.io/videoanalyzeraccounts.videoanalyzer.io" in crds
