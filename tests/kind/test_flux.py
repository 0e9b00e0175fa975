"""Flux applying the operator and a tenant from Git, for real: source-controller and
kustomize-controller built from their Go modules, a Git server on the kind network's bridge, and
`deploy/flux/rendered-chart.yaml` as shipped (its URL pointed at that server). The operator's folder
is the chart rendered with `helm template`; the tenant's folder is the README walk-through's examples.

The tests run in file order, as one story: the tenant waits for the operator and is Ready only once
its accounts are; a key that is not there yet, and access taken away in Git, make it fail at once,
naming objects whose own conditions say why; a change in Git is applied and the account re-wraps;
manual edits are reverted; and nothing is rewritten in a loop.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests import helpers
from tests.integration import tenant
from tests.kind import walkthrough
from vaopdev import binaries, flux, gitserver, kindcluster

SETTINGS = {"operator.checkInterval": "5", "operator.gracePeriod": "30"}
LAYOUT = binaries.REPO_ROOT / "deploy" / "flux" / "rendered-chart.yaml"
NO_LOOP_WINDOW = 300.0  # seconds of watching for writes nobody asked for
RECONCILE_EVERY = "30s"  # during the test; the shipped file's intervals are minutes


@pytest.fixture(scope="module")
def fluxcd(kind_cluster: kindcluster.Cluster) -> Iterator[flux.Flux]:
    # The chart comes from Git here, not from `helm install`: no release of the other test files.
    kind_cluster.helm("uninstall", kindcluster.RELEASE, "-n", kindcluster.NAMESPACE, "--wait", check=False)
    kind_cluster.kubectl("delete", "namespace", "tenant-a", "--ignore-not-found", "--wait", timeout=180)
    installed = flux.install(kind_cluster)
    yield installed
    # Deleting the Kustomizations prunes what they applied: the tenant, then the operator.
    for name in ("tenant-a", "video-analyzer-operator"):
        installed.delete("kustomization", name)
    installed.uninstall()
    for namespace in ("tenant-a", kindcluster.NAMESPACE):  # the next file installs into a new one
        kind_cluster.kubectl("wait", "--for=delete", f"namespace/{namespace}", "--timeout=240s", timeout=260,
                             check=False)  # fmt: skip


@pytest.fixture(scope="module")
def repository(git: gitserver.GitServer, kind_cluster: kindcluster.Cluster) -> gitserver.Repository:
    """The platform repository: the rendered chart and the walk-through's tenant."""
    repo = git.repository("platform")
    rendered = kind_cluster.render(values=SETTINGS)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": kindcluster.NAMESPACE}}
    files = {"operator/namespace.yaml": yaml.safe_dump(namespace), "operator/chart.yaml": rendered}
    files.update(
        {f"tenant-a/{name}": (walkthrough.EXAMPLES / name).read_text() for name in walkthrough.TENANT_FILES}
    )
    repo.commit(files, "the operator and tenant-a")
    return repo


def _layout(url: str) -> list[dict[str, Any]]:
    """The shipped layout, pointed at the test's Git server and reconciling every half minute."""
    documents = [d for d in yaml.safe_load_all(LAYOUT.read_text()) if d]
    for document in documents:
        if document["kind"] == "GitRepository":
            document["spec"].update(url=url, interval=RECONCILE_EVERY)
        else:
            document["spec"]["interval"] = RECONCILE_EVERY
    return documents


def _kustomization(fluxcd: flux.Flux, name: str) -> tuple[str, str, str]:
    """(Ready status, reason, message) of a Kustomization; empty strings before it has one."""
    ready = fluxcd.ready("kustomization", name) or {}
    return ready.get("status", ""), ready.get("reason", ""), ready.get("message", "")


def _applied(fluxcd: flux.Flux, name: str, revision: str) -> bool:
    """The Kustomization applied this Git revision and found everything it applied ready."""
    status = fluxcd.get("kustomization", name).get("status") or {}
    return (
        status.get("lastAppliedRevision", "").endswith(revision) and _kustomization(fluxcd, name)[0] == "True"
    )


def _pull(fluxcd: flux.Flux, *kustomizations: str) -> None:
    """`flux reconcile kustomization --with-source`: fetch Git now, then apply now."""
    token = uuid.uuid4().hex[:8]
    fluxcd.reconcile("gitrepository", "platform", token)
    for name in kustomizations:
        fluxcd.reconcile("kustomization", name, token)


STALLED = re.compile(r"(VideoAnalyzerAccount|CustomerKey|KeyVault)/tenant-a/([\w.-]+) status: 'Failed'")


def _failed_early(fluxcd: flux.Flux) -> list[tuple[str, str]]:
    """The tenant objects the tenant Kustomization names as Failed while it is not Ready because of
    them (kstatus: their Stalled condition), without waiting for its timeout; [] otherwise. Flux stops
    at the first it finds and names those, not their messages."""
    status, _, message = _kustomization(fluxcd, "tenant-a")
    if status != "False" or "failed early due to stalled resources" not in message:
        return []
    return STALLED.findall(message)


def _stalled_for(admin: client.ApiClient, named: list[tuple[str, str]], reason: str) -> None:
    """Each object Flux named says why itself: not Ready, for ``reason``."""
    assert named
    for kind, name in named:
        ready = helpers.condition(helpers.get(admin, "tenant-a", kind, name), "Ready") or {}
        assert (ready.get("status"), ready.get("reason")) == ("False", reason), (kind, name, ready)


def test_the_tenant_waits_for_the_operator_and_is_ready_only_with_its_accounts(
    fluxcd: flux.Flux, repository: gitserver.Repository, admin: client.ApiClient
) -> None:
    fluxcd.apply(*_layout(repository.url))
    helpers.eventually(
        lambda: _kustomization(fluxcd, "video-analyzer-operator")[0] == "True", timeout=300, interval=2
    )
    # The key the CustomerKey names does not exist yet: the account is KeyInaccessible (Stalled), so
    # the tenant's Kustomization fails its health check at once, saying which account and why.
    _stalled_for(
        admin, helpers.eventually(lambda: _failed_early(fluxcd), timeout=180, interval=2), "KeyNotFound"
    )
    assert walkthrough.state(admin, "tenant-a", "studio-byok") == ("KeyInaccessible", "KeyNotFound")
    assert walkthrough.state(admin, "tenant-a", "studio") == ("Active", "Ready")
    walkthrough.vaop_keys(fluxcd.cluster, "create")
    tenant.wait_wrapped_by(admin, "tenant-a", "studio-byok", keyVersion="1", timeout=60)
    _pull(fluxcd, "tenant-a")
    helpers.eventually(lambda: _kustomization(fluxcd, "tenant-a")[0] == "True", timeout=120, interval=2)
    states = {walkthrough.state(admin, "tenant-a", name) for name in ("studio", "studio-byok")}
    assert states == {("Active", "Ready")}


def test_access_taken_away_in_git_makes_the_tenant_not_ready_and_coming_back_recovers(
    fluxcd: flux.Flux, repository: gitserver.Repository, admin: client.ApiClient
) -> None:
    access = (walkthrough.EXAMPLES / "35-key-access.yaml").read_text()
    revoked = repository.commit(
        {"tenant-a/35-key-access.yaml": walkthrough.key_access_without_binding()}, "revoke studio-byok"
    )
    _pull(fluxcd, "tenant-a")
    # Pruned by Flux, the binding is gone; the operator's next check locks the account.
    helpers.eventually(
        lambda: walkthrough.state(admin, "tenant-a", "studio-byok") == ("KeyInaccessible", "AccessDenied"),
        timeout=120,
    )
    _pull(fluxcd, "tenant-a")
    named = helpers.eventually(lambda: _failed_early(fluxcd), timeout=120, interval=2)
    _stalled_for(admin, named, "AccessDenied")
    assert fluxcd.get("kustomization", "tenant-a")["status"]["lastAttemptedRevision"].endswith(revoked)
    restored = repository.commit({"tenant-a/35-key-access.yaml": access}, "give studio-byok its access back")
    _pull(fluxcd, "tenant-a")
    helpers.eventually(lambda: _applied(fluxcd, "tenant-a", restored), timeout=180, interval=2)
    assert walkthrough.state(admin, "tenant-a", "studio-byok") == ("Active", "Ready")


def test_a_change_in_git_is_applied_and_the_account_rewraps(
    fluxcd: flux.Flux, repository: gitserver.Repository, admin: client.ApiClient
) -> None:
    kcv = tenant.wait_wrapped_by(admin, "tenant-a", "studio-byok", keyVersion="1")["status"]["accountKey"][
        "keyCheckValue"
    ]
    walkthrough.vaop_keys(fluxcd.cluster, "rotate")  # the tenant's key team: version 2, followed at once
    tenant.wait_wrapped_by(admin, "tenant-a", "studio-byok", keyVersion="2", timeout=60)
    keys = (walkthrough.EXAMPLES / "30-customerkey.yaml").read_text()
    pinned = keys.replace('keyVersion: ""', 'keyVersion: "1"', 1)
    assert pinned != keys
    revision = repository.commit({"tenant-a/30-customerkey.yaml": pinned}, "pin tenant-key to version 1")
    _pull(fluxcd, "tenant-a")
    account = tenant.wait_wrapped_by(admin, "tenant-a", "studio-byok", keyVersion="1", timeout=120)
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv  # the same account key, re-wrapped
    helpers.eventually(lambda: _applied(fluxcd, "tenant-a", revision), timeout=180, interval=2)


def test_manual_edits_are_reverted(fluxcd: flux.Flux, admin: client.ApiClient) -> None:
    cluster = fluxcd.cluster
    cluster.kubectl("-n", "tenant-a", "patch", "customerkey", "tenant-key", "--type=merge",
                    "-p", '{"spec": {"keyVersion": "2"}}')  # fmt: skip
    cluster.kubectl("-n", "tenant-a", "delete", "rolebinding", "studio-byok-reads-account-keks")
    _pull(fluxcd, "tenant-a")

    def back() -> bool:
        key = helpers.get(admin, "tenant-a", "CustomerKey", "tenant-key")
        binding = cluster.kubectl("-n", "tenant-a", "get", "rolebinding", "studio-byok-reads-account-keks",
                                  check=False)  # fmt: skip
        return bool(key["spec"]["keyVersion"] == "1" and binding.returncode == 0)

    helpers.eventually(back, timeout=120, interval=2)
    tenant.wait_wrapped_by(admin, "tenant-a", "studio-byok", keyVersion="1", timeout=120)
    helpers.eventually(lambda: _kustomization(fluxcd, "tenant-a")[0] == "True", timeout=180, interval=2)
    assert walkthrough.state(admin, "tenant-a", "studio-byok") == ("Active", "Ready")


APPLIED = "kustomize.toolkit.fluxcd.io/name in (video-analyzer-operator,tenant-a)"  # Flux's label
WATCHED = (  # namespace, kinds, selector
    (
        "tenant-a",
        "videoanalyzeraccounts,customerkeys,keyvaults,secrets,serviceaccounts,roles,rolebindings",
        "",
    ),
    (kindcluster.NAMESPACE, "deployments,services,serviceaccounts,secrets,configmaps", ""),
    ("", "validatingwebhookconfigurations,apiservices,customresourcedefinitions,clusterroles", APPLIED),
)


def _objects(cluster: kindcluster.Cluster) -> dict[str, dict[str, Any]]:
    """Every object the two Kustomizations apply or the operator writes, by kind/namespace/name."""
    found: dict[str, dict[str, Any]] = {}
    for namespace, kinds, selector in WATCHED:
        scope = ["-n", namespace] if namespace else []
        chosen = ["-l", selector] if selector else []
        listed = cluster.kubectl(*scope, "get", kinds, *chosen, "-o", "yaml").stdout
        for item in yaml.safe_load(listed)["items"]:
            meta = item["metadata"]
            found[f"{item['kind']}/{meta.get('namespace', '')}/{meta['name']}"] = item
    return found


def _reconciliations(fluxcd: flux.Flux, name: str) -> int:
    history = (fluxcd.get("kustomization", name).get("status") or {}).get("history") or []
    return sum(int(entry.get("totalReconciliations", 0)) for entry in history)


def _without_heartbeat(obj: dict[str, Any]) -> dict[str, Any]:
    """The object less what changes with any write (resourceVersion, managedFields' times) and a
    CustomerKey's `status.lastChecked`, which the operator refreshes every 5 minutes by design."""
    copy = yaml.safe_load(yaml.safe_dump(obj))
    copy["metadata"].pop("resourceVersion", None)
    copy["metadata"].pop("managedFields", None)
    if copy["kind"] == "CustomerKey":
        copy.get("status", {}).pop("lastChecked", None)
    return dict(copy)


def test_nothing_is_rewritten_in_a_loop(fluxcd: flux.Flux) -> None:
    """Flux re-applies both folders every half minute and the operator checks the key every 5 s; for
    five minutes neither writes anything but the CustomerKeys' `lastChecked` heartbeat (at most one
    per key per 5 minutes): no field fought over (the webhook's caBundle, which the operator writes,
    and the chart's objects, which Flux applies), no status rewritten unchanged."""
    names = ("video-analyzer-operator", "tenant-a")
    before, reconciled = _objects(fluxcd.cluster), {n: _reconciliations(fluxcd, n) for n in names}
    versions = {key: {obj["metadata"]["resourceVersion"]} for key, obj in before.items()}
    deadline = time.monotonic() + NO_LOOP_WINDOW
    while time.monotonic() < deadline:  # every version seen, so each write is counted
        time.sleep(10)
        for key, obj in _objects(fluxcd.cluster).items():
            versions.setdefault(key, set()).add(obj["metadata"]["resourceVersion"])
    after = _objects(fluxcd.cluster)
    assert {"ValidatingWebhookConfiguration", "APIService", "VideoAnalyzerAccount", "Secret"} <= {
        key.split("/")[0] for key in before
    }
    assert before.keys() == after.keys(), before.keys() ^ after.keys()
    writes = {key: len(seen) - 1 for key, seen in versions.items() if len(seen) > 1}
    changed = sorted(
        key for key in before if _without_heartbeat(before[key]) != _without_heartbeat(after[key])
    )
    assert changed == [], changed
    assert all(key.startswith("CustomerKey/") and count <= 2 for key, count in writes.items()), writes
    for name in names:  # Flux did look, at least once a minute: every half minute, plus the time
        # tenant-a waits for its health checks (wait) and for the operator's Kustomization (dependsOn)
        # on a busy machine (7 in five minutes in one CI run)
        assert _reconciliations(fluxcd, name) - reconciled[name] >= NO_LOOP_WINDOW / 60, name
