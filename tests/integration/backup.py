"""Object-level backups and restores, as Velero makes them (and as `kubectl get -o yaml` plus a GitOps
repository do): names, namespaces, labels, annotations, spec and data survive; uid,
resourceVersion, status and ownerReferences do not (Velero's restore drops them all). The restore
runs as Velero's ServiceAccount, in an order the test chooses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from tests import helpers
from tests.integration.conftest import Kubectl
from vaop import labels

VELERO = "system:serviceaccount:velero:velero"  # the chart's default backup.identities
# Velero's own restore order: Secrets (and the RBAC around them) before any custom resource.
VELERO_ORDER = (
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "Secret",
    "CustomerKey",
    "KeyVault",
    "SealedObject",
    "VideoAnalyzerAccount",
)
_DROPPED_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "selfLink",
    "ownerReferences",
    "managedFields",
)


@dataclass
class Backup:
    namespace: str
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # kind -> objects

    def restore(
        self, kubectl: Kubectl, kinds: tuple[str, ...] = VELERO_ORDER, *, as_user: str = VELERO
    ) -> None:
        """Create the backed-up objects of ``kinds``, kind by kind in that order, as ``as_user``; an
        object that exists already is left as it is (Velero's default existing-resource policy)."""
        for kind in kinds:
            items = self.objects.get(kind, [])
            if not items:
                continue
            document = {"apiVersion": "v1", "kind": "List", "items": items}
            created = kubectl("create", f"--as={as_user}", "-f", "-", stdin=json.dumps(document), check=False)
            errors = [line for line in created.stderr.splitlines() if line.strip()]
            if created.returncode != 0 and not all("(AlreadyExists)" in line for line in errors):
                raise AssertionError(f"restoring {kind} failed: {created.stderr}")

    def only(self, kind: str, name: str) -> dict[str, Any]:
        return next(o for o in self.objects[kind] if o["metadata"]["name"] == name)


def _stripped(obj: dict[str, Any], kind: str, api_version: str) -> dict[str, Any]:
    kept = {k: v for k, v in obj.items() if k != "status"}
    kept["apiVersion"], kept["kind"] = api_version, kind
    meta = {k: v for k, v in obj["metadata"].items() if k not in _DROPPED_METADATA}
    meta["labels"] = {
        **(meta.get("labels") or {}),
        "velero.io/backup-name": "test",
        "velero.io/restore-name": "test",
    }
    kept["metadata"] = meta
    return kept


def take(kubectl: Kubectl, namespace: str) -> Backup:
    """Every object of ``namespace`` that a tenant namespace's backup holds."""
    backup = Backup(namespace)
    for kind in VELERO_ORDER:
        listed = json.loads(kubectl("-n", namespace, "get", _RESOURCES[kind], "-o", "json").stdout)
        backup.objects[kind] = [
            _stripped(item, kind, item["apiVersion"])
            for item in listed["items"]
            if not (kind == "ServiceAccount" and item["metadata"]["name"] == "default")
            and not (kind == "Secret" and item.get("type") == "kubernetes.io/service-account-token")
        ]
    return backup


_RESOURCES = {
    "ServiceAccount": "serviceaccounts",
    "Role": "roles.rbac.authorization.k8s.io",
    "RoleBinding": "rolebindings.rbac.authorization.k8s.io",
    "Secret": "secrets",
    "CustomerKey": "customerkeys.videoanalyzer.io",
    "KeyVault": "keyvaults.videoanalyzer.io",
    "SealedObject": "sealedobjects.internal.videoanalyzer.io",
    "VideoAnalyzerAccount": "videoanalyzeraccounts.videoanalyzer.io",
}


def account_key_secret_names(backup: Backup) -> list[str]:
    return [
        s["metadata"]["name"]
        for s in backup.objects.get("Secret", [])
        if (s["metadata"].get("labels") or {}).get(labels.COMPONENT) == labels.ACCOUNT_KEY_COMPONENT
    ]


def delete_namespace(admin: client.ApiClient, namespace: str) -> None:
    """Delete the namespace, wait until it is gone (its objects with it), and make it again, empty."""
    core = client.CoreV1Api(admin)
    core.delete_namespace(namespace)

    def gone() -> bool:
        try:
            core.read_namespace(namespace)
        except client.ApiException as error:
            return bool(error.status == 404)
        return False

    helpers.eventually(gone, timeout=90, interval=0.5)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
