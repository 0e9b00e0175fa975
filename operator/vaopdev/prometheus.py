"""Prometheus on the kind tier, offline: the server users run beside the operator.

Built from Prometheus' Go module (``tools/prometheus``, with Kubernetes service discovery only), its
image written straight from the binary (``ociarchive``) and loaded into the node. It finds every
operator Pod through the Kubernetes API, labels each series with the Pod's namespace and name (as a
prometheus-operator ServiceMonitor does), and evaluates the chart's alert rules
(``files/alerts.yaml``) as a plain rules file. Tests read its own HTTP API through the apiserver's
service proxy: nothing is exposed outside the cluster.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import binaries, kindcluster, ociarchive

NAMESPACE = "monitoring"
NAME = "prometheus"
PORT = 9090
RULES = kindcluster.CHART_DIR / "files" / "alerts.yaml"


def image() -> str:
    return f"quay.io/prometheus/prometheus:{binaries.PROMETHEUS.version()}"


def image_archive() -> Path:
    """A docker-archive tarball of the server, made once per version."""
    built = binaries.PROMETHEUS.ensure()
    folder = binaries.cache_dir() / f"prometheus-image-{binaries.PROMETHEUS.version()}"
    server = ociarchive.FilesImage(
        image(),
        {"/bin/prometheus": built / "prometheus"},
        entrypoint=["/bin/prometheus"],
        user="65534:65534",
        empty={"/prometheus": 0o1777},
    )
    return ociarchive.archives(folder, {"prometheus.tar": server})[0]


def configuration(operator_namespace: str, *, interval: str) -> dict[str, Any]:
    """prometheus.yml: every operator Pod's metrics port, labelled with its namespace and Pod."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": ["/etc/prometheus/alerts.yaml"],
        "scrape_configs": [
            {
                "job_name": "video-analyzer-operator",
                "kubernetes_sd_configs": [
                    {
                        "role": "pod",
                        "namespaces": {"names": [operator_namespace]},
                        "selectors": [
                            {"role": "pod", "label": "app.kubernetes.io/name=video-analyzer-operator"}
                        ],
                    }
                ],
                "relabel_configs": [
                    {
                        "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                        "regex": "metrics",
                        "action": "keep",
                    },
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                ],
            }
        ],
    }


def manifests(operator_namespace: str, *, interval: str = "5s") -> list[dict[str, Any]]:
    """The server, its configuration and the least it may read: Pods of the operator's namespace."""
    labels = {"app.kubernetes.io/name": NAME}
    meta = {"name": NAME, "namespace": NAMESPACE}
    config = {
        "prometheus.yml": yaml.safe_dump(configuration(operator_namespace, interval=interval)),
        "alerts.yaml": RULES.read_text(),
    }
    container = {
        "name": NAME,
        "image": image(),
        "args": [
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            f"--web.listen-address=:{PORT}",
        ],
        "ports": [{"name": "web", "containerPort": PORT}],
        "readinessProbe": {"httpGet": {"path": "/-/ready", "port": "web"}, "periodSeconds": 2},
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/prometheus"},
            {"name": "data", "mountPath": "/prometheus"},
        ],
    }
    reader = {"name": f"{NAME}-{NAMESPACE}", "namespace": operator_namespace}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": reader,
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": reader,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": reader["name"]},
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": config},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": NAME,
                        "containers": [container],
                        "volumes": [
                            {"name": "config", "configMap": {"name": NAME}},
                            {"name": "data", "emptyDir": {}},
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"selector": labels, "ports": [{"name": "web", "port": PORT, "targetPort": "web"}]},
        },
    ]


@dataclass(frozen=True)
class Prometheus:
    """The server in one kind cluster, read through the apiserver's service proxy."""

    cluster: kindcluster.Cluster

    def api(self, path: str, **params: str) -> Any:
        """``/api/v1/<path>``'s data; an error status raises."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        raw = f"/api/v1/namespaces/{NAMESPACE}/services/{NAME}:{PORT}/proxy/api/v1/{path}{query}"
        answer = json.loads(self.cluster.kubectl("get", "--raw", raw).stdout)
        if answer.get("status") != "success":
            raise RuntimeError(f"Prometheus answered {path}: {answer}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: each series' labels and value."""
        return list(self.api("query", query=expr)["result"])

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"].get("alertname") == name]

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets", state="active")["activeTargets"])

    def uninstall(self) -> None:
        self.cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait", timeout=180)


def install(cluster: kindcluster.Cluster, operator_namespace: str, *, interval: str = "5s") -> Prometheus:
    """The server, scraping and evaluating every ``interval``, ready to answer."""
    cluster.load_archive(image_archive())
    documents = "---\n".join(yaml.safe_dump(m) for m in manifests(operator_namespace, interval=interval))
    cluster.kubectl("apply", "-f", "-", stdin=documents)
    cluster.kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{NAME}", "--timeout=180s", timeout=200)
    prometheus = Prometheus(cluster)
    deadline = time.monotonic() + 60
    while True:  # the Service's endpoints follow the Pod's readiness a moment later
        try:
            prometheus.api("status/buildinfo")
            return prometheus
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
