"""The chart, rendered by the real helm: what a platform engineer gets from `helm install`, and what
bad values get instead (a refusal that says what is wrong)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from vaop import config, permissions
from vaopdev import binaries

CHART = binaries.REPO_ROOT / "charts" / "video-analyzer-operator"
Render = Callable[..., list[dict[str, Any]]]


def _helm_template(*values: str, release: str = "vaop") -> subprocess.CompletedProcess[str]:
    command = [
        str(binaries.HELM.ensure() / "helm"),
        "template",
        release,
        str(CHART),
        "--namespace",
        "vaop-system",
    ]
    command += ["--kube-version", "1.37.0"]
    for value in values:
        command += ["--set", value]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def render(*values: str, release: str = "vaop") -> list[dict[str, Any]]:
    result = _helm_template(*values, release=release)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def only(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} rendered"
    return found[0]


def container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    spec = only(documents, "Deployment")["spec"]["template"]["spec"]
    return dict(spec["containers"][0])


def test_chart_crds_match_the_top_level_crds() -> None:
    chart_crds = CHART / "files" / "crds"
    top_level = sorted((binaries.REPO_ROOT / "crds").glob("*.yaml"))
    assert [p.name for p in top_level] == sorted(p.name for p in chart_crds.glob("*.yaml"))
    for crd in top_level:
        assert (chart_crds / crd.name).read_text() == crd.read_text(), f"run `make crds`: {crd.name} differs"


def test_crds_are_templates_kept_on_uninstall_unless_disabled() -> None:
    crds = [d for d in render() if d["kind"] == "CustomResourceDefinition"]
    assert sorted(c["metadata"]["name"] for c in crds) == [
        "customerkeys.videoanalyzer.io",
        "keyvaults.videoanalyzer.io",
        "sealedobjects.internal.videoanalyzer.io",
        "videoanalyzeraccounts.videoanalyzer.io",
    ]
    top = {
        yaml.safe_load(p.read_text())["metadata"]["name"]: yaml.safe_load(p.read_text())
        for p in (binaries.REPO_ROOT / "crds").glob("*.yaml")
    }
    for crd in crds:
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["spec"] == top[crd["metadata"]["name"]]["spec"]
    assert "helm.sh/resource-policy" not in str(render("crds.keep=false"))
    assert not [d for d in render("crds.enabled=false") if d["kind"] == "CustomResourceDefinition"]


def test_default_install_is_two_replicas_with_probes_budget_and_spread() -> None:
    documents = render()
    deployment = only(documents, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    operator = container(documents)
    assert operator["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert operator["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert operator["lifecycle"]["preStop"]["sleep"]["seconds"] == 5
    assert only(documents, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert spread["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert not [
        d
        for d in render("replicaCount=1", "leaderElection.enabled=false")
        if d["kind"] == "PodDisruptionBudget"
    ]


def test_pod_meets_the_restricted_pod_security_standard() -> None:
    documents = render()
    pod = only(documents, "Deployment")["spec"]["template"]["spec"]
    operator = container(documents)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert operator["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_values_reach_the_operator_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    operator = container(
        render(
            "operator.checkInterval=45",
            "operator.gracePeriod=600",
            "operator.workers=4",
            "operator.logFormat=json",
            "leaderElection.leaseName=my-lease",
            "extraArgs={--log-level=DEBUG}",
            "extraEnv[0].name=HTTPS_PROXY",
            "extraEnv[0].value=http://proxy:3128",
            "pkcs11.modules={/usr/lib/softhsm/libsofthsm2.so}",
        )
    )
    env = {e["name"]: e.get("value") for e in operator["env"]}
    monkeypatch.setenv("VAOP_PKCS11_MODULES", env["VAOP_PKCS11_MODULES"])
    assert config.OperatorConfig().pkcs11_modules == ["/usr/lib/softhsm/libsofthsm2.so"]
    assert env["VAOP_CHECK_INTERVAL"] == "45"
    assert env["VAOP_GRACE_PERIOD"] == "600"
    assert env["VAOP_WORKERS"] == "4"
    assert env["VAOP_LEASE_NAME"] == "my-lease"
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    assert "--log-format=json" in operator["args"] and operator["args"][-1] == "--log-level=DEBUG"


def test_a_platform_root_in_an_hsm_reaches_the_operator_with_its_pin_from_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    operator = container(
        render(
            "platformKeys.provider=pkcs11",
            "platformKeys.pkcs11.module=/opt/hsm/libhsm.so",
            "platformKeys.pkcs11.tokenLabel=platform",
            "platformKeys.pkcs11.pinSecret.name=hsm-pin",
            "extraVolumes[0].name=hsm",
            "extraVolumes[0].hostPath.path=/opt/hsm",
            "extraVolumeMounts[0].name=hsm",
            "extraVolumeMounts[0].mountPath=/opt/hsm",
        )
    )
    env = {e["name"]: e for e in operator["env"]}
    assert env["VAOP_PLATFORM_PKCS11_PIN"]["valueFrom"]["secretKeyRef"] == {"name": "hsm-pin", "key": "pin"}
    assert {"name": "hsm", "mountPath": "/opt/hsm"} in operator["volumeMounts"]
    for name in (
        "VAOP_PLATFORM_KEYS_PROVIDER",
        "VAOP_PLATFORM_PKCS11_MODULE",
        "VAOP_PLATFORM_PKCS11_TOKEN_LABEL",
    ):
        monkeypatch.setenv(name, env[name]["value"])
    monkeypatch.setenv("VAOP_PLATFORM_PKCS11_PIN", "1234")
    settings = config.OperatorConfig()
    assert (settings.platform_keys_provider, settings.platform_pkcs11_module) == (
        "pkcs11",
        "/opt/hsm/libhsm.so",
    )
    assert "VAOP_PLATFORM_PKCS11_PIN" not in {e["name"] for e in container(render())["env"]}


SHARD_B = (
    "fullnameOverride=vaop-b",
    "serviceAccount.name=vaop-b",
    "leaderElection.leaseName=vaop-b",
    "webhook.configurationName=vaop-b",
    "crds.enabled=false",
    "dataAPI.enabled=false",
    "sharding.namespaceSelector.matchLabels.videoanalyzer\\.io/shard=b",
)


def test_a_second_release_as_a_shard_shares_no_object_with_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    def names(documents: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
        return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in documents}

    first, second = render(), render(*SHARD_B, release="vaop-b")
    assert names(first) & names(second) == set()
    env = {e["name"]: e.get("value") for e in container(second)["env"]}
    assert env["VAOP_OWN_TLS_SECRET"] == "vaop-b-own-tls"
    assert env["VAOP_WEBHOOK_SERVICE"] == "vaop-b-webhook"
    monkeypatch.setenv("VAOP_NAMESPACE_SELECTOR", env["VAOP_NAMESPACE_SELECTOR"])
    assert config.OperatorConfig().namespace_selector == {"matchLabels": {"videoanalyzer.io/shard": "b"}}
    # Its webhook answers only for its own namespaces; the first release's keeps answering for all.
    webhook = only(second, "ValidatingWebhookConfiguration")["webhooks"][0]
    assert webhook["namespaceSelector"]["matchLabels"] == {"videoanalyzer.io/shard": "b"}
    assert "VAOP_NAMESPACE_SELECTOR" not in {e["name"] for e in container(first)["env"]}


def test_sharding_without_leader_election_is_refused() -> None:
    result = _helm_template(
        "sharding.namespaceSelector.matchLabels.a=b", "leaderElection.enabled=false", "replicaCount=1"
    )
    assert result.returncode != 0
    assert "sharding.namespaceSelector needs leaderElection.enabled=true" in result.stderr


def test_image_by_digest_and_pull_secrets() -> None:
    digest = "sha256:" + "a" * 64
    documents = render(f"image.digest={digest}", "imagePullSecrets[0].name=regcred")
    assert container(documents)["image"] == f"ghcr.io/videoanalyzer/video-analyzer-operator@{digest}"
    pod = only(documents, "Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert container(render("image.tag=1.2.3"))["image"].endswith(":1.2.3")


def test_webhook_configuration_belongs_to_the_release() -> None:
    webhook = only(render(), "ValidatingWebhookConfiguration")
    assert webhook["metadata"]["name"] == "video-analyzer-operator"
    for hook in webhook["webhooks"]:
        assert hook["failurePolicy"] == "Fail"
        assert hook["clientConfig"]["service"] == {
            "name": "video-analyzer-operator-webhook",
            "namespace": "vaop-system",
            "path": "/validate",
            "port": 443,
        }
        conditions = [c["expression"] for c in hook["matchConditions"]]
        assert (
            "request.userInfo.username != 'system:serviceaccount:vaop-system:video-analyzer-operator'"
            in conditions
        )
        excluded = hook["namespaceSelector"]["matchExpressions"][0]
        assert excluded["operator"] == "NotIn" and excluded["values"] == ["kube-system", "vaop-system"]
    assert not [d for d in render("webhook.enabled=false") if d["kind"] == "ValidatingWebhookConfiguration"]


def test_cert_manager_mode_injects_the_ca_and_mounts_nothing_of_ours() -> None:
    documents = render("webhook.certManager.enabled=true")
    kinds = [d["kind"] for d in documents]
    assert kinds.count("Certificate") == 2 and kinds.count("Issuer") == 2
    serving = next(d for d in documents if d["kind"] == "Certificate" and not d["spec"].get("isCA"))
    assert serving["spec"]["dnsNames"][0] == "video-analyzer-operator-webhook.vaop-system.svc"
    env = {e["name"]: e.get("value") for e in container(documents)["env"]}
    assert env["VAOP_WEBHOOK_CERT_SECRET"] == serving["spec"]["secretName"]
    webhook = only(documents, "ValidatingWebhookConfiguration")
    assert webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        "vaop-system/video-analyzer-operator-webhook"
    )


def test_optional_service_monitor_and_network_policy() -> None:
    assert not [d for d in render() if d["kind"] in ("ServiceMonitor", "NetworkPolicy")]
    documents = render("metrics.serviceMonitor.enabled=true", "networkPolicy.enabled=true")
    assert only(documents, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "metrics"
    policy = only(documents, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = [rule["ports"][0]["port"] for rule in policy["spec"]["ingress"]]
    assert ports == ["webhook", "data-api", "health", "metrics"]
    assert all("from" not in rule for rule in policy["spec"]["ingress"])  # nothing named: any source


def test_network_policy_lets_only_the_named_apiserver_reach_the_servers() -> None:
    peers = [{"ipBlock": {"cidr": "10.0.0.10/32"}}]
    scraper = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    documents = render(
        "networkPolicy.enabled=true",
        "networkPolicy.apiserverFrom[0].ipBlock.cidr=10.0.0.10/32",
        r"networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\.io/metadata\.name=monitoring",
    )
    rules = {
        r["ports"][0]["port"]: r.get("from") for r in only(documents, "NetworkPolicy")["spec"]["ingress"]
    }
    assert rules == {"webhook": peers, "data-api": peers, "health": None, "metrics": scraper}


def _operator_roles(documents: list[dict[str, Any]]) -> set[str]:
    return {
        d["roleRef"]["name"]
        for d in documents
        if d["kind"] in ("ClusterRoleBinding", "RoleBinding")
        and any(subject.get("name") == "video-analyzer-operator" for subject in d["subjects"])
    }


def _granted(documents: list[dict[str, Any]]) -> set[tuple[str, str, str, str | None, bool]]:
    """What the chart's own roles bound to the operator grant it."""
    granted = set()
    bound = _operator_roles(documents)
    for role in (
        d for d in documents if d["kind"] in ("ClusterRole", "Role") and d["metadata"]["name"] in bound
    ):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames") or [None]:
                            granted.add((verb, group, resource, name, role["kind"] == "Role"))
    return granted


def _builtin_roles(documents: list[dict[str, Any]]) -> set[str]:
    """Roles Kubernetes defines itself that the chart binds to the operator."""
    own = {d["metadata"]["name"] for d in documents if d["kind"] in ("ClusterRole", "Role")}
    found = set()
    for binding in (d for d in documents if d["kind"] in ("ClusterRoleBinding", "RoleBinding")):
        if binding["roleRef"]["name"] in own:
            continue
        where = f"{binding['metadata']['namespace']}/" if binding["roleRef"]["kind"] == "Role" else ""
        found.add(f"{binding['roleRef']['kind']} {where}{binding['roleRef']['name']}")
    return found


def _needed(rules: list[permissions.Permission]) -> set[tuple[str, str, str, str | None, bool]]:
    return {
        (p.verb, p.group, p.resource, p.name, p.namespaced_to_operator) for p in rules if not p.granted_by
    }


def test_rbac_grants_exactly_what_the_code_uses() -> None:
    rules = permissions.required(
        webhook_configuration="video-analyzer-operator",
        lease="video-analyzer-operator",
        api_service="v1alpha1.data.videoanalyzer.io",
    )
    documents = render()
    assert _granted(documents) == _needed(rules)
    assert _builtin_roles(documents) == {p.granted_by for p in rules if p.granted_by}
    minimal = render(
        "webhook.enabled=false", "leaderElection.enabled=false", "replicaCount=1", "dataAPI.enabled=false"
    )
    assert _granted(minimal) == _needed(permissions.required(webhook_configuration=None, lease=None))
    assert _builtin_roles(minimal) == set()
    shard = render(
        "fullnameOverride=vaop-b",
        "dataAPI.enabled=false",
        "webhook.configurationName=vaop-b",
        "leaderElection.leaseName=vaop-b",
        "sharding.namespaceSelector.matchLabels.videoanalyzer\\.io/shard=b",
    )
    assert _granted(shard) == _needed(
        permissions.required(webhook_configuration="vaop-b", lease="vaop-b", sharded=True)
    )


def test_tenants_get_viewer_and_editor_roles_of_the_data_kinds() -> None:
    roles = {d["metadata"]["name"]: d for d in render() if d["kind"] == "ClusterRole"}
    viewer, editor = roles["video-analyzer-data-viewer"], roles["video-analyzer-data-editor"]
    assert viewer["rules"][0]["verbs"] == ["get", "list", "watch"]
    assert "delete" in editor["rules"][0]["verbs"]
    assert viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    apiservice = only(render(), "APIService")
    assert apiservice["spec"]["service"]["name"] == "video-analyzer-operator-api"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("replicas=3", "additional properties 'replicas' not allowed"),
        ("operator.logLevel=LOUD", "/operator/logLevel"),
        ("operator.logFormat=xml", "/operator/logFormat"),
        ("operator.workers=0", "/operator/workers"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("image.digest=sha256:abc", "/image/digest"),
        ("webhook.failurePolicy=Maybe", "/webhook/failurePolicy"),
        (
            "leaderElection.renewDeadline=20",
            "leaseDuration must be greater than leaderElection.renewDeadline",
        ),
        ("leaderElection.enabled=false", "replicaCount > 1 needs leaderElection.enabled=true"),
        ("platformKeys.provider=vault", "/platformKeys/provider"),
        ("platformKeys.provider=openbao", "/platformKeys/openbao"),
        ("platformKeys.provider=pkcs11", "/platformKeys/pkcs11"),
    ],
)
def test_bad_values_are_refused_with_a_message(value: str, message: str) -> None:
    result = _helm_template(value)
    assert result.returncode != 0
    assert message in result.stderr


def test_security_guide_explains_every_right() -> None:
    guide = (binaries.REPO_ROOT / "docs" / "security.md").read_text()
    rows = [line for line in guide.splitlines() if line.startswith("| `")]
    rules = permissions.required(webhook_configuration="w", lease="l", api_service="a", sharded=True)
    unexplained = [
        str(p)
        for p in rules
        if not any(f"`{p.verb}`" in row and f"`{p.resource}`" in row for row in rows)
        and not any(f"`{p.verb}`" in row and f"`{p.name}`" in row for row in rows)
    ]
    assert unexplained == []
