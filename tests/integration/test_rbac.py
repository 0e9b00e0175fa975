"""The operator's rights, compared with what its code does on the real apiserver.

permissions.required() is what the code declares (the chart grants exactly that: tests/unit/test_chart.py).
Here the apiserver's audit log is the witness: a scenario that walks every code path that touches the
API, then every right granted must have been used, and every request made must have been granted.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

import pytest
from kubernetes import client, watch

from tests.integration import tenant
from tests.integration.azure_stand_in import AzureKeyVault
from tests.integration.conftest import Kubectl
from tests.integration.test_azure_key_vault import account_on_annotated_identity
from tests.integration.test_data_api import POLICY
from vaop import permissions
from vaopdev import cluster, environment

pytestmark = pytest.mark.usefixtures("operator")
OPERATOR = f"system:serviceaccount:{environment.OPERATOR_NAMESPACE}:{environment.OPERATOR_SERVICE_ACCOUNT}"

# What every authenticated user may do (system:basic-user, system:discovery): not the chart's grant.
_EVERYONE = {
    ("create", "authorization.k8s.io", "selfsubjectaccessreviews"),
    ("create", "authorization.k8s.io", "selfsubjectrulesreviews"),
    ("create", "authentication.k8s.io", "selfsubjectreviews"),
}

Right = tuple[str, str, str]  # verb, API group, resource[/subresource]


def _right(event: dict[str, Any]) -> Right | None:
    ref = event.get("objectRef")
    if not ref:
        return None  # discovery and other non-resource URLs
    resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    return event["verb"], ref.get("apiGroup", ""), resource


def _rules() -> list[permissions.Permission]:
    # The local operator runs with all three optional parts on, as the chart's defaults do.
    return permissions.required(
        webhook_configuration="video-analyzer-operator",
        lease="video-analyzer-operator",
        api_service="v1alpha1.data.videoanalyzer.io",
    )


def _walk_every_path(
    admin: client.ApiClient, kubectl: Kubectl, namespace: str, keys_namespace: str, azure: AzureKeyVault
) -> None:
    """A customer key (kubernetes provider: key Secrets, the identity's token), a rotation (the
    Secret's update), an Azure key signed in with the identity's annotations, and the data API
    (sealed storage, authorization of each request)."""
    tenant.studio_on_customer_key(admin, namespace, keys_namespace)
    tenant.put_key_version(admin, keys_namespace, "kek", 2, tenant.rsa_pem(2048))
    tenant.wait_wrapped_by(admin, namespace, "studio", type="CustomerKey", keyVersion="2")
    # A second tenant, on Azure Key Vault, its app named by its identity's annotations.
    account_on_annotated_identity(admin, keys_namespace, azure)
    kubectl("apply", "-f", "-", stdin=POLICY.format(namespace=namespace))
    kubectl("-n", namespace, "get", "accesspolicies", "viewers")
    watching = watch.Watch().stream(
        client.CustomObjectsApi(admin).list_namespaced_custom_object,
        "data.videoanalyzer.io",
        "v1alpha1",
        namespace,
        "accesspolicies",
        timeout_seconds=1,
    )
    assert [event["type"] for event in watching] == ["ADDED"]
    kubectl("-n", namespace, "label", "accesspolicies", "viewers", "team=blue")
    kubectl("-n", namespace, "delete", "accesspolicies", "viewers")


def _audit(control_plane: cluster.ControlPlane, user: str) -> list[dict[str, Any]]:
    return list(control_plane.audit_events(since=0, users={user}))


def _describe(events: Iterable[dict[str, Any]]) -> list[str]:
    return sorted(
        {f"{e['verb']} {e['requestURI']} -> {e.get('responseStatus', {}).get('code')}" for e in events}
    )


def _during(outages: list[tuple[float, float]], event: dict[str, Any]) -> bool:
    """Whether the request came while a test had the apiserver or etcd down (test_faults.py), or
    within 10 s of its return."""
    at = datetime.datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
    return any(start <= at <= end + 10 for start, end in outages)


def test_every_right_granted_is_used_and_every_request_is_granted(
    *,
    admin: client.ApiClient,
    kubectl: Kubectl,
    namespace: str,
    keys_namespace: str,
    control_plane: cluster.ControlPlane,
    azure_vault: AzureKeyVault,
) -> None:
    _walk_every_path(admin, kubectl, namespace, keys_namespace, azure_vault)
    events = [e for e in _audit(control_plane, OPERATOR) if (r := _right(e)) and r not in _EVERYONE]
    rules = _rules()
    declared = {(p.verb, p.group, p.resource) for p in rules}
    used = {_right(e) for e in events}

    assert used - declared == set(), "requests the code makes but does not declare"
    assert declared - used == set(), "rights declared (and granted by the chart) that no code path used"
    # Refused by RBAC (not, say, by admission into a namespace being deleted, also a 403).
    decisions = [e.get("annotations", {}).get("authorization.k8s.io/decision") for e in events]
    assert set(decisions) <= {"allow", "forbid"}, "the audit log no longer says what RBAC decided"
    refused = [
        e
        for e, decision in zip(events, decisions, strict=True)
        if decision == "forbid" and not _during(control_plane.outages, e)
    ]
    assert not refused, _describe(refused)
    for rule in rules:  # rights limited to one object or one namespace are used on that one only
        touched = [e for e in events if _right(e) == (rule.verb, rule.group, rule.resource)]
        if rule.name:
            assert {e["objectRef"].get("name") for e in touched} == {rule.name}, str(rule)
        if rule.namespace or rule.namespaced_to_operator:
            expected = rule.namespace or environment.OPERATOR_NAMESPACE
            assert {e["objectRef"].get("namespace") for e in touched} == {expected}, str(rule)


def test_can_i_list_shows_only_the_declared_rights(
    admin: client.ApiClient, kubectl: Kubectl, namespace: str
) -> None:
    """What `kubectl auth can-i --list` shows for the operator in a tenant's namespace: the declared
    rights, beyond what any ServiceAccount has (one with no binding, beside it), and no wildcard."""
    client.CoreV1Api(admin).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    nobody = f"system:serviceaccount:{namespace}:nobody"
    table = kubectl("auth", "can-i", "--list", f"--as={OPERATOR}", "-n", namespace).stdout
    granted = _from_table(table) - _from_table(
        kubectl("auth", "can-i", "--list", f"--as={nobody}", "-n", namespace).stdout
    )
    rules = _rules()
    # Rights limited to the operator's namespace or to kube-system do not show in a tenant's.
    declared = {(p.verb, p.group, p.resource) for p in rules if not (p.namespace or p.namespaced_to_operator)}
    assert granted == declared, table


def _from_table(table: str) -> set[Right]:
    """(verb, group, resource[/subresource]) rows of `kubectl auth can-i --list`; non-resource URLs
    are left out. A row names resource.group/subresource."""
    rights: set[Right] = set()
    for line in table.splitlines()[1:]:
        columns = line.split()
        if not columns or columns[0].startswith("["):
            continue
        verbs = line[line.rindex("[") + 1 : line.rindex("]")].split()
        assert "*" not in columns[0] and "*" not in verbs, f"a wildcard right: {line}"
        named, _, subresource = columns[0].partition("/")
        resource, _, group = named.partition(".")
        resource += f"/{subresource}" if subresource else ""
        rights |= {(verb, group, resource) for verb in verbs}
    return rights
