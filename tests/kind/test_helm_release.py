"""The operator as users run it: its image on a real kind cluster, installed, upgraded and uninstalled
with helm, two replicas behind the webhook's Service, one leading on a Lease.

The tests run in file order, as one story: install, the README walk-through, the lock through the
Service-backed webhook, Prometheus firing the key alert (and the dashboard's queries), a broken RBAC
rule, an upgrade under admission load, the switch to cert-manager (and a renewal) under load,
the chart's NetworkPolicy enforced, losing the leader in the middle of a rotation, a second release
as a shard, and uninstalling.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import itertools
import json
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests import helpers
from tests.integration import tenant
from tests.kind import walkthrough
from vaop import models, pki
from vaop.crypto import envelope
from vaopdev import binaries, certmanager, kindcluster, netpolicy, prometheus

CHECK_INTERVAL = 5
LEASE_DURATION = 15
SETTINGS = {"operator.checkInterval": str(CHECK_INTERVAL), "operator.gracePeriod": "30"}
SELECTOR = "app.kubernetes.io/name=video-analyzer-operator"


def _pods(cluster: kindcluster.Cluster) -> list[dict[str, Any]]:
    listing = cluster.kubectl("-n", kindcluster.NAMESPACE, "get", "pods", "-l", SELECTOR, "-o", "json").stdout
    return [p for p in json.loads(listing)["items"] if not p["metadata"].get("deletionTimestamp")]


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def _leader(admin: client.ApiClient) -> str | None:
    lease = client.CoordinationV1Api(admin).read_namespaced_lease(
        "video-analyzer-operator", kindcluster.NAMESPACE
    )
    return lease.spec.holder_identity  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def release(kind_cluster: kindcluster.Cluster) -> Iterator[kindcluster.Cluster]:
    """The chart installed into a namespace that enforces the restricted Pod Security Standard."""
    # A cluster kept from an earlier session (VAOP_KEEP_KIND) starts from the same state as a new one.
    kind_cluster.helm("uninstall", kindcluster.RELEASE, "-n", kindcluster.NAMESPACE, "--wait", check=False)
    kind_cluster.kubectl("delete", "namespace", "tenant-a", "--ignore-not-found", "--wait", timeout=180)
    kind_cluster.kubectl("create", "namespace", kindcluster.NAMESPACE, check=False)
    kind_cluster.kubectl(
        "label",
        "--overwrite",
        "namespace",
        kindcluster.NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted",
    )
    started = time.monotonic()
    kind_cluster.install(values=SETTINGS)
    print(f"\nhelm install --wait: {time.monotonic() - started:.1f}s")
    yield kind_cluster
    kind_cluster.helm("uninstall", kindcluster.RELEASE, "-n", kindcluster.NAMESPACE, "--wait", check=False)


def test_install_brings_up_two_ready_replicas_one_leading(
    release: kindcluster.Cluster, admin: client.ApiClient
) -> None:
    pods = _pods(release)
    assert len(pods) == 2 and all(_ready(p) for p in pods), [p["status"].get("phase") for p in pods]
    names = {p["metadata"]["name"] for p in pods}
    # A Lease left by an earlier release (uninstall does not remove it) is taken over once it expires.
    helpers.eventually(lambda: _leader(admin) in names, timeout=LEASE_DURATION + 10)
    # Admitted under `restricted`: non-root, no privilege escalation, no capabilities, seccomp.
    assert all(p["spec"]["containers"][0]["image"] == release.operator_image for p in pods)
    webhook = client.AdmissionregistrationV1Api(admin).read_validating_webhook_configuration(
        "video-analyzer-operator"
    )
    assert all(hook.client_config.ca_bundle for hook in webhook.webhooks)
    assert all(hook.client_config.service.namespace == kindcluster.NAMESPACE for hook in webhook.webhooks)
    for pod in pods:  # every replica, leader or not, says it is ready and why it waited
        log = release.kubectl("-n", kindcluster.NAMESPACE, "logs", pod["metadata"]["name"]).stdout
        assert "Ready: apiserver, data-api, permissions, platform-keys, watches, webhook" in log


def test_readme_walkthrough_on_kind(release: kindcluster.Cluster, admin: client.ApiClient) -> None:
    release.wait_for_data_api()
    release.kubectl("apply", "-f", str(walkthrough.EXAMPLES))
    helpers.eventually(
        lambda: walkthrough.state(admin, "tenant-a", "studio") == ("Active", "Ready"), timeout=60
    )
    helpers.eventually(
        lambda: walkthrough.state(admin, "tenant-a", "studio-byok") == ("KeyInaccessible", "KeyNotFound")
    )
    walkthrough.vaop_keys(release, "create")
    account = tenant.wait_wrapped_by(admin, "tenant-a", "studio-byok", keyVersion="1", timeout=30)
    kcv = account["status"]["accountKey"]["keyCheckValue"]
    walkthrough.vaop_keys(release, "rotate")
    account = tenant.wait_wrapped_by(admin, "tenant-a", "studio-byok", keyVersion="2", timeout=30)
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv
    assert walkthrough.state(admin, "tenant-a", "studio-byok") == ("Active", "Ready")
    # The account's data, through the chart's APIService and Service (examples/50-data.yaml)
    video = json.loads(
        release.kubectl("-n", "tenant-a", "get", "video", "lobby-2026-11-29", "-o", "json").stdout
    )
    assert video["spec"]["title"] == "Lobby camera"
    assert helpers.condition(video, "Ready")["reason"] == "Sealed"  # type: ignore[index]
    table = release.kubectl("-n", "tenant-a", "get", "accesspolicies").stdout.splitlines()
    assert table[1].split()[:3] == ["viewers", "studio", "Reader"]


def test_locked_account_is_refused_through_the_service_webhook(
    release: kindcluster.Cluster, admin: client.ApiClient
) -> None:
    release.kubectl("-n", "tenant-a", "delete", "rolebinding", "studio-byok-reads-account-keks")
    helpers.eventually(
        lambda: walkthrough.state(admin, "tenant-a", "studio-byok") == ("KeyInaccessible", "AccessDenied"),
        timeout=CHECK_INTERVAL + 10,
    )
    refused = release.kubectl("-n", "tenant-a", "label", "vaa", "studio-byok", "team=blue", check=False)
    assert refused.returncode != 0
    assert "is KeyInaccessible (reason AccessDenied)" in refused.stderr
    release.kubectl("apply", "-f", str(walkthrough.EXAMPLES / "35-key-access.yaml"))
    helpers.eventually(
        lambda: walkthrough.state(admin, "tenant-a", "studio-byok") == ("Active", "Ready"), timeout=30
    )
    release.kubectl("-n", "tenant-a", "label", "vaa", "studio-byok", "team=blue")


KEY_ALERT = "VideoAnalyzerAccountsKeyInaccessible"


def _alert(monitoring: prometheus.Prometheus, state: str) -> dict[str, Any] | None:
    return next((a for a in monitoring.alerts(KEY_ALERT) if a["state"] == state), None)


def _dashboard_queries() -> list[str]:
    dashboard = json.loads((kindcluster.CHART_DIR / "files" / "dashboard.json").read_text())
    return [
        target["expr"].replace("$namespace", kindcluster.NAMESPACE)
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def test_prometheus_scrapes_every_replica_and_fires_the_key_alert(
    release: kindcluster.Cluster, admin: client.ApiClient
) -> None:
    """Prometheus, built from its Go module, finds each replica and evaluates the chart's rules file:
    a revoked key fires VideoAnalyzerAccountsKeyInaccessible once the rule's ``for`` has passed, on
    the leader's series, and clears when access returns; the dashboard's queries read the same
    Prometheus."""
    monitoring = prometheus.install(release, kindcluster.NAMESPACE)
    try:
        pods = sorted(p["metadata"]["name"] for p in _pods(release))
        helpers.eventually(
            lambda: sorted(t["labels"]["pod"] for t in monitoring.targets() if t["health"] == "up") == pods,
            timeout=60,
        )
        leaders = helpers.eventually(lambda: monitoring.query("vaop_leader == 1"), timeout=60)
        assert [s["metric"]["pod"] for s in leaders] == [_leader(admin)]  # one replica leads, and says so
        rules = [r for g in monitoring.api("rules")["groups"] for r in g["rules"]]
        hold = next(r["duration"] for r in rules if r["name"] == KEY_ALERT)  # the rule's `for`, in seconds
        assert hold == 300 and _alert(monitoring, "pending") is None

        release.kubectl("-n", "tenant-a", "delete", "rolebinding", "studio-byok-reads-account-keks")
        helpers.eventually(
            lambda: (
                walkthrough.state(admin, "tenant-a", "studio-byok") == ("KeyInaccessible", "AccessDenied")
            ),
            timeout=CHECK_INTERVAL + 10,
        )
        pending = helpers.eventually(lambda: _alert(monitoring, "pending"), timeout=30, interval=1)
        locked_at = time.monotonic()
        assert pending["labels"] == {
            "alertname": KEY_ALERT,
            "namespace": kindcluster.NAMESPACE,
            "pod": _leader(admin),
            "severity": "warning",
        }
        firing = helpers.eventually(lambda: _alert(monitoring, "firing"), timeout=hold + 60, interval=2)
        fired_after = time.monotonic() - locked_at
        print(f"\n{KEY_ALERT}: pending at once, firing after {fired_after:.0f}s (for: {hold:.0f}s)")
        assert hold - 15 <= fired_after <= hold + 30  # not before its `for`, and within an evaluation of it
        assert firing["annotations"]["summary"] == "1 accounts cannot use their customer key"

        queries = _dashboard_queries()
        by_state = {s["metric"]["state"]: float(s["value"][1]) for s in monitoring.query(queries[0])}
        assert by_state["KeyInaccessible"] == 1 and by_state["Active"] >= 1, by_state  # studio, and any left
        for expr in queries:  # every panel's query is one this Prometheus evaluates
            monitoring.query(expr)

        release.kubectl("apply", "-f", str(walkthrough.EXAMPLES / "35-key-access.yaml"))
        helpers.eventually(
            lambda: walkthrough.state(admin, "tenant-a", "studio-byok") == ("Active", "Ready"), timeout=30
        )
        helpers.eventually(lambda: not monitoring.alerts(KEY_ALERT), timeout=30, interval=1)
    finally:
        monitoring.uninstall()


def test_missing_rbac_rule_shows_in_log_and_readiness(
    release: kindcluster.Cluster, admin: client.ApiClient
) -> None:
    rbac = client.RbacAuthorizationV1Api(admin)
    role_name = f"{kindcluster.RELEASE}-video-analyzer-operator"
    role = rbac.read_cluster_role(role_name)
    role.rules = [r for r in role.rules if r.resources != ["serviceaccounts/token"]]
    rbac.replace_cluster_role(role_name, role)
    victim = next(p for p in _pods(release) if p["metadata"]["name"] != _leader(admin))["metadata"]["name"]
    release.kubectl("-n", kindcluster.NAMESPACE, "delete", "pod", victim)

    def unready_replacement() -> dict[str, Any] | None:
        fresh = [p for p in _pods(release) if p["metadata"]["name"] != victim and p["status"].get("podIP")]
        return next((p for p in fresh if not _ready(p) and p["status"].get("containerStatuses")), None)

    replacement = helpers.eventually(unready_replacement, timeout=60)["metadata"]["name"]
    log = helpers.eventually(
        lambda: (
            text
            if "Missing RBAC permission"
            in (text := release.kubectl("-n", kindcluster.NAMESPACE, "logs", replacement).stdout)
            else None
        ),
        timeout=60,
    )
    assert "create serviceaccounts/token (core, cluster-wide): act as an account's identity" in log
    assert not _ready(next(p for p in _pods(release) if p["metadata"]["name"] == replacement))
    release.install(upgrade=True)  # helm puts the rule back; the replica notices without a restart
    helpers.eventually(lambda: len([p for p in _pods(release) if _ready(p)]) == 2 or None, timeout=60)


class _Probe:
    """Server dry-run PATCHes through the webhook (and, with ``data_api``, LISTs through the data
    API), every 0.1 s on a thread, each outcome kept: what a cluster's users see while the servers
    change underneath."""

    def __init__(self, admin: client.ApiClient, *, data_api: bool = True) -> None:
        self._custom = client.CustomObjectsApi(admin)
        self._data_api = data_api
        self.results: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Probe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def failures(self) -> list[str]:
        return [r for r in self.results if r != "ok"]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._custom.patch_namespaced_custom_object(
                    models.GROUP,
                    models.VERSION,
                    "tenant-a",
                    "videoanalyzeraccounts",
                    "studio",
                    {"metadata": {"labels": {"probe": str(len(self.results))}}},
                    dry_run="All",
                )
                if self._data_api:
                    self._custom.list_namespaced_custom_object(
                        "data.videoanalyzer.io", "v1alpha1", "tenant-a", "accesspolicies"
                    )
                self.results.append("ok")
            except ApiException as error:
                self.results.append(f"{error.status}: {error.body}")
            time.sleep(0.1)


def test_helm_upgrade_keeps_admission_answering(
    release: kindcluster.Cluster, admin: client.ApiClient
) -> None:
    """Server dry-run PATCHes go through the webhook all along a rolling upgrade: none may fail."""
    before = {p["metadata"]["name"] for p in _pods(release)}
    with _Probe(admin, data_api=False) as probe:
        started = time.monotonic()
        release.install(upgrade=True, values={"operator.workers": "4"})
        upgraded = time.monotonic() - started
        time.sleep(15)  # the old replicas finish terminating while requests keep coming
    results, failures = probe.results, probe.failures()
    print(f"\nhelm upgrade --wait: {upgraded:.1f}s; {len(results)} dry-run PATCHes, {len(failures)} failed")
    assert len(results) > 50
    assert failures == []
    after = _pods(release)
    assert {p["metadata"]["name"] for p in after}.isdisjoint(before)
    for pod in after:
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["VAOP_WORKERS"] == "4"


def _served_certificate(cluster: kindcluster.Cluster, pod: str, port: int) -> bytes:
    """The certificate a replica's server presents (DER), read over ``kubectl port-forward``. A
    forward that fails raises AssertionError, so that ``helpers.eventually`` tries again."""
    kubectl = str(binaries.KUBE.ensure() / "kubectl")
    command = [kubectl, "--kubeconfig", str(cluster.kubeconfig), "-n", kindcluster.NAMESPACE]
    forward = subprocess.Popen(
        [*command, "port-forward", f"pod/{pod}", f":{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()  # "Forwarding from 127.0.0.1:<local> -> <port>"
        assert line.startswith("Forwarding from 127.0.0.1:"), f"kubectl port-forward: {line!r}"
        local = int(line.split("->")[0].rsplit(":", 1)[1])
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            with (
                socket.create_connection(("127.0.0.1", local), timeout=10) as raw,
                context.wrap_socket(raw) as tls,
            ):
                served = tls.getpeercert(binary_form=True)
        except OSError as error:  # ssl.SSLError is one too
            raise AssertionError(f"TLS through the port-forward to {pod}:{port}: {error}") from error
        assert served is not None
        return served
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def _secret_certificate(admin: client.ApiClient, name: str) -> tuple[bytes, bytes]:
    """(serving certificate as DER, CA as PEM) of a kubernetes.io/tls Secret in the release namespace."""
    data = client.CoreV1Api(admin).read_namespaced_secret(name, kindcluster.NAMESPACE).data
    serving_pem = base64.b64decode(data["tls.crt"]).decode()
    return ssl.PEM_cert_to_DER_cert(serving_pem), base64.b64decode(data["ca.crt"])


def test_cert_manager_issues_and_renews_the_serving_certificate(
    release: kindcluster.Cluster, admin: client.ApiClient
) -> None:
    """The chart's cert-manager mode with the real cert-manager, switched to under load: every
    replica's webhook and data API serve cert-manager's certificate, its CA injected into both
    registrations by cainjector; a renewal is served by both, without a restart. Not one call fails
    in either change."""
    issuer = certmanager.install(release)
    with _Probe(admin) as switching:
        release.install(upgrade=True, values={"webhook.certManager.enabled": "true"})
        time.sleep(15)  # the old replicas finish terminating while calls keep coming
    secret = "video-analyzer-operator-webhook-tls"
    serving, ca_pem = _secret_certificate(admin, secret)

    def injected(ca: bytes) -> bool:
        hook = client.AdmissionregistrationV1Api(admin).read_validating_webhook_configuration(
            "video-analyzer-operator"
        )
        service = client.ApiregistrationV1Api(admin).read_api_service("v1alpha1.data.videoanalyzer.io")
        bundles = [w.client_config.ca_bundle for w in hook.webhooks] + [service.spec.ca_bundle]
        return all(pki.bundle_holds(base64.b64decode(b), ca) for b in bundles)

    print(f"\nswitch to cert-manager: {len(switching.results)} calls, {len(switching.failures())} failed")
    assert len(switching.results) > 30
    assert switching.failures() == []
    assert injected(ca_pem)  # by cainjector (the operator only waits for it before it is ready)
    release.wait_for_data_api()
    pods = {p["metadata"]["name"]: p for p in _pods(release)}
    ports = (9443, 8443)  # the webhook's and the data API's
    for pod, port in itertools.product(pods, ports):
        serves = functools.partial(_served_certificate, release, pod, port)
        helpers.eventually(lambda: serves() == serving or None, timeout=30)  # noqa: B023

    with _Probe(admin) as probe:
        time.sleep(3)
        issuer.renew(kindcluster.NAMESPACE, "video-analyzer-operator-webhook")
        renewed, same_ca = helpers.eventually(
            lambda: found if (found := _secret_certificate(admin, secret))[0] != serving else None,
            timeout=60,
        )
        started = time.monotonic()
        for pod, port in itertools.product(pods, ports):
            serves = functools.partial(_served_certificate, release, pod, port)
            helpers.eventually(lambda: serves() == renewed or None, timeout=30)  # noqa: B023
        picked_up = time.monotonic() - started
        time.sleep(3)
    print(
        f"\nrenewal served by every replica {picked_up:.1f}s after the Secret changed;"
        f" {len(probe.results)} calls"
    )
    # Both registrations trust what signs now: the same CA, or the one cert-manager made again just
    # after the first (it does at times, a second after creating the CA's Certificate), which
    # cainjector merges into the bundles.
    assert same_ca == ca_pem or helpers.eventually(lambda: injected(same_ca) or None, timeout=30)
    assert len(probe.results) > 30
    assert probe.failures() == []
    after = {p["metadata"]["name"]: p for p in _pods(release)}
    assert after.keys() == pods.keys()  # no restart, no new Pod
    assert [_restarts(p) for p in after.values()] == [_restarts(p) for p in pods.values()]


def _restarts(pod: dict[str, Any]) -> int:
    return sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses", []))


def _operator_dials(cluster: kindcluster.Cluster, pod: str, address: str) -> str:
    """``open`` or ``timeout``: a connection from the operator's container (its own Python)."""
    host, port = address.rsplit(":", 1)
    script = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(({host!r}, {port}), timeout=3).close(); print('open')\n"
        "except TimeoutError:\n"
        "    print('timeout')\n"
    )
    found = cluster.kubectl(
        "-n", kindcluster.NAMESPACE, "exec", pod, "--", "python", "-c", script, timeout=30
    )
    return found.stdout.strip()


def test_network_policy_is_enforced(release: kindcluster.Cluster, admin: client.ApiClient) -> None:
    """The chart's NetworkPolicy, enforced by kube-network-policies (built from its Go module) on the
    node: the webhook and data API answer the apiserver but not a tenant's pod, metrics answer the
    namespace the values name and no other, and the operator reaches only what its egress rules
    allow, while admission, the data API and new accounts keep working."""
    network = netpolicy.install(release)
    release.kubectl("create", "namespace", "monitoring", check=False)
    tenant_probe = network.start_probe("tenant-a", "netprobe")
    network.start_probe("monitoring", "netprobe")
    pod = _pods(release)[0]
    operator_ip, name = pod["status"]["podIP"], pod["metadata"]["name"]
    ports = {"webhook": 9443, "data API": 8443, "metrics": 8080}
    node = client.CoreV1Api(admin).list_node().items[0]
    node_ip = next(a.address for a in node.status.addresses if a.type == "InternalIP")
    pod_gateway = str(ipaddress.ip_network(node.spec.pod_cidr)[1])  # the ptp CNI's host side
    policy = {
        "networkPolicy.enabled": "true",
        "networkPolicy.apiserverFrom": [{"ipBlock": {"cidr": f"{a}/32"}} for a in (node_ip, pod_gateway)],
        "networkPolicy.metricsFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
        "networkPolicy.egress": [
            {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
            {"to": [{"ipBlock": {"cidr": f"{node_ip}/32"}}], "ports": [{"port": 6443, "protocol": "TCP"}]},
        ],
    }

    def reachable() -> dict[str, str]:
        found = {
            what: network.dial("tenant-a", "netprobe", f"{operator_ip}:{port}")
            for what, port in ports.items()
        }
        found["metrics from monitoring"] = network.dial("monitoring", "netprobe", f"{operator_ip}:8080")
        found["webhook from monitoring"] = network.dial("monitoring", "netprobe", f"{operator_ip}:9443")
        found["operator to a tenant's pod"] = _operator_dials(
            release, name, f"{tenant_probe}:{netpolicy.PROBE_PORT}"
        )
        return found

    try:
        assert set(reachable().values()) == {"open"}  # nothing enforced yet
        release.install(upgrade=True, values=policy)
        assert [p["metadata"]["name"] for p in _pods(release)].count(name) == 1  # the same Pod
        enforced = {
            "webhook": "timeout",
            "data API": "timeout",
            "metrics": "timeout",
            "metrics from monitoring": "open",
            "webhook from monitoring": "timeout",
            "operator to a tenant's pod": "timeout",
        }
        helpers.eventually(lambda: reachable() == enforced or None, timeout=90)  # a round: up to 20 s
        # The apiserver still reaches both servers, and the operator the apiserver.
        custom = client.CustomObjectsApi(admin)
        patch = {"metadata": {"labels": {"policy": "on"}}}
        custom.patch_namespaced_custom_object(
            models.GROUP, models.VERSION, "tenant-a", "videoanalyzeraccounts", "studio", patch, dry_run="All"
        )
        custom.list_namespaced_custom_object(
            "data.videoanalyzer.io", "v1alpha1", "tenant-a", "accesspolicies"
        )
        helpers.create(admin, "tenant-a", "VideoAnalyzerAccount", "behind-policy", {"region": "westeurope"})
        helpers.eventually(
            lambda: walkthrough.state(admin, "tenant-a", "behind-policy")[0] == "Active" or None, timeout=60
        )
    finally:
        release.install(upgrade=True, values={"networkPolicy.enabled": "false"})
        for namespace in ("tenant-a", "monitoring"):
            release.kubectl("-n", namespace, "delete", "pod", "netprobe", "--wait=false", check=False)
        network.uninstall()


def test_losing_the_leader_mid_rotation(release: kindcluster.Cluster, admin: client.ApiClient) -> None:
    """The leader's pod is deleted while a rotation of 60 accounts runs: the other replica takes over
    within the lease duration plus one check interval and completes it; no account key changes and
    every envelope opens with the new version."""
    core = client.CoreV1Api(admin)
    namespace, keys = f"failover-{uuid.uuid4().hex[:6]}", f"failover-keys-{uuid.uuid4().hex[:6]}"
    for name in (namespace, keys):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    v1, v2, v3 = tenant.rsa_pem(2048), tenant.rsa_pem(2048), tenant.rsa_pem(2048)
    tenant.make_vault(admin, namespace, "vault", keys_namespace=keys)
    tenant.put_key_version(admin, keys, "kek", 1, v1)
    tenant.make_key(admin, namespace, "key", vault="vault", key_name="kek")
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="shared"))
    )
    tenant.grant(admin, keys_namespace=keys, identity_namespace=namespace, identity="shared")
    names = [f"acct-{i:02d}" for i in range(60)]
    for name in names:
        spec = {
            "type": "CustomerKey",
            "keyRef": {"name": "key"},
            "identity": {"serviceAccountName": "shared"},
        }
        helpers.create(
            admin, namespace, "VideoAnalyzerAccount", name, {"region": "westeurope", "encryption": spec}
        )

    def on(version: str) -> int:
        """How many accounts are Active with their key wrapped by ``version``."""
        items = helpers.custom(admin).list_namespaced_custom_object(
            models.GROUP, models.VERSION, namespace, "videoanalyzeraccounts"
        )["items"]
        return sum(
            (i.get("status", {}).get("accountKey") or {}).get("wrappedBy", {}).get("keyVersion") == version
            and i["status"].get("state") == "Active"
            for i in items
        )

    def all_on(version: str) -> bool:
        return on(version) == len(names)

    def under_way(version: str) -> int | None:
        done = on(version)
        return done if 0 < done < len(names) else None

    helpers.eventually(lambda: all_on("1"), timeout=120, interval=1)
    kcvs = {
        n: helpers.get(admin, namespace, "VideoAnalyzerAccount", n)["status"]["accountKey"]["keyCheckValue"]
        for n in names
    }
    secret_uids = {n: core.read_namespaced_secret(f"{n}-account-key", namespace).metadata.uid for n in names}

    # First as a drain does it (the leader stops and hands the Lease over), then as a crash does
    # (killed after a second: the Lease must expire before the other replica may lead).
    for version, pem, grace in (("2", v2, []), ("3", v3, ["--grace-period=1"])):
        old_leader = _leader(admin)
        tenant.put_key_version(admin, keys, "kek", int(version), pem)
        # The leader is re-wrapping: some accounts on the new version, the others still to go.
        helpers.eventually(functools.partial(under_way, version), timeout=60, interval=0.05)
        deleted = time.monotonic()
        release.kubectl("-n", kindcluster.NAMESPACE, "delete", "pod", str(old_leader), "--wait=false", *grace)

        def successor(old: str | None = old_leader) -> str | None:
            holder = _leader(admin)
            return holder if holder not in (None, old) else None

        new_leader = helpers.eventually(successor, timeout=60, interval=0.2)
        failover = time.monotonic() - deleted
        helpers.eventually(functools.partial(all_on, version), timeout=120, interval=1)
        rotated = time.monotonic() - deleted
        print(
            f"\nleader {old_leader} deleted {' '.join(grace) or 'gracefully'}: {new_leader} leads after "
            f"{failover:.1f}s; all {len(names)} accounts on version {version} after {rotated:.1f}s"
        )
        # At worst the Lease expires unreleased (SIGKILL after the 1 s grace): its duration, one
        # retry period of the successor (2 s, +20 % jitter), and a check interval.
        assert failover <= LEASE_DURATION + 2.4 + CHECK_INTERVAL
        for name in names:
            account = helpers.get(admin, namespace, "VideoAnalyzerAccount", name)
            assert account["status"]["accountKey"]["keyCheckValue"] == kcvs[name]
            assert (
                core.read_namespaced_secret(f"{name}-account-key", namespace).metadata.uid
                == secret_uids[name]
            )
            account_key = tenant.open_account_key(admin, namespace, name, pem)
            assert envelope.key_check_value(account_key) == kcvs[name]


SHARD_B = {
    "fullnameOverride": "vaop-b",
    "serviceAccount.name": "vaop-b",
    "leaderElection.leaseName": "vaop-b",
    "webhook.configurationName": "vaop-b",
    "crds.enabled": "false",
    "dataAPI.enabled": "false",  # one release serves the data API, for every namespace
    "replicaCount": "1",
    "sharding.namespaceSelector.matchLabels.videoanalyzer\\.io/shard": "b",
    **SETTINGS,
}
NOT_SHARD_B = {
    "sharding.namespaceSelector.matchExpressions[0].key": "videoanalyzer.io/shard",
    "sharding.namespaceSelector.matchExpressions[0].operator": "NotIn",
    "sharding.namespaceSelector.matchExpressions[0].values[0]": "b",
}


def _claim_events(
    admin: client.ApiClient, name: str, seen: list[tuple[str, str]], stop: threading.Event
) -> None:
    """Every change of the claim Lease ``name``: (event type, holder)."""
    watcher = watch.Watch()
    while not stop.is_set():
        for event in watcher.stream(
            client.CoordinationV1Api(admin).list_namespaced_lease,
            kindcluster.NAMESPACE,
            field_selector=f"metadata.name={name}",
            timeout_seconds=5,
        ):
            seen.append((event["type"], event["object"].spec.holder_identity or ""))


def test_two_shards_hand_a_namespace_over(release: kindcluster.Cluster, admin: client.ApiClient) -> None:
    """Two releases in one namespace, each reconciling the namespaces its selector picks: a
    namespace relabelled from one to the other is released by the first before the second claims it."""
    release.install(values=NOT_SHARD_B, upgrade=True)
    release.install(values=SHARD_B, release="vaop-b")
    namespace = f"shard-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(admin)
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=namespace, labels={"videoanalyzer.io/shard": "b"})
        )
    )
    claim = f"vaop-claim-{namespace}"
    seen: list[tuple[str, str]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_claim_events, args=(admin, claim, seen, stop), daemon=True)
    watcher.start()
    try:
        tenant.account(admin, namespace, "cam")
        tenant.wait_condition(admin, namespace, "cam", "Ready", "True", timeout=120)
        assert _claim_holder(admin, claim) == "vaop-b"

        core.patch_namespace(namespace, {"metadata": {"labels": {"videoanalyzer.io/shard": "a"}}})
        helpers.eventually(lambda: _claim_holder(admin, claim) == "video-analyzer-operator", timeout=60)
        # Released (deleted) by vaop-b, then made by the other release: never taken from a live holder.
        holders = [holder for kind, holder in seen if kind != "DELETED"]
        assert holders[0] == "vaop-b" and holders[-1] == "video-analyzer-operator"
        first_new = next(i for i, (kind, holder) in enumerate(seen) if holder == "video-analyzer-operator")
        assert ("DELETED", "vaop-b") in seen[:first_new], seen
        assert f"Namespace {namespace} handed over by release vaop-b" in _logs(release, "vaop-b")
        # The namespace's new owner reconciles it: a new account there comes up.
        tenant.account(admin, namespace, "cam2")
        tenant.wait_condition(admin, namespace, "cam2", "Ready", "True", timeout=120)
    finally:
        stop.set()
        release.helm("uninstall", "vaop-b", "--namespace", kindcluster.NAMESPACE, "--wait", check=False)
        release.install(values={"sharding.namespaceSelector": "null"}, upgrade=True)
        release.kubectl(
            "-n", kindcluster.NAMESPACE, "delete", "lease", "-l", "videoanalyzer.io/component=namespace-claim"
        )
        core.delete_namespace(namespace)


def _claim_holder(admin: client.ApiClient, name: str) -> str | None:
    try:
        lease = client.CoordinationV1Api(admin).read_namespaced_lease(name, kindcluster.NAMESPACE)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return lease.spec.holder_identity  # type: ignore[no-any-return]


def _logs(cluster: kindcluster.Cluster, deployment: str) -> str:
    return cluster.kubectl("-n", kindcluster.NAMESPACE, "logs", f"deploy/{deployment}", "--tail=-1").stdout


def test_uninstall_leaves_no_webhook_behind(release: kindcluster.Cluster, admin: client.ApiClient) -> None:
    release.uninstall()
    configurations = client.AdmissionregistrationV1Api(admin).list_validating_webhook_configuration().items
    assert [c.metadata.name for c in configurations if "video-analyzer" in c.metadata.name] == []
    # The CRDs stay (crds.keep), and with them every account; new ones are not blocked by anything.
    assert helpers.get(admin, "tenant-a", "VideoAnalyzerAccount", "studio")["status"]["state"] == "Active"
    namespace = f"after-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(admin).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    helpers.create(admin, namespace, "VideoAnalyzerAccount", "later", {"region": "westeurope"})
    assert helpers.get(admin, namespace, "VideoAnalyzerAccount", "later")["metadata"]["name"] == "later"
