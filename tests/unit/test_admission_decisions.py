"""Admission verdicts from the in-memory view, as a table."""

from __future__ import annotations

from typing import Any

import pytest

from vaop.domain import admission

OPERATOR = "system:serviceaccount:vaop-system:video-analyzer-operator"
GC = "system:serviceaccount:kube-system:generic-garbage-collector"

VIEW = admission.View(
    account_state={("t", "locked"): ("KeyInaccessible", "AccessDenied"), ("t", "fine"): ("Active", "Ready")},
    customer_keys={
        ("t", "ec"): {
            "spec": {"vaultRef": {"name": "v"}, "keyName": "ec"},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "KeyUnsupported", "message": "EC"}
                ]
            },
        },
        ("t", "good"): {"spec": {"vaultRef": {"name": "v"}, "keyName": "k"}, "status": {}},
        ("t", "far"): {"spec": {"vaultRef": {"name": "east"}, "keyName": "k"}, "status": {}},
    },
    vaults={"t": {"v": {"region": "westeurope"}, "east": {"region": "eastus"}}},
    operator_username=OPERATOR,
    system_deleters=frozenset({GC}),
)


def _account(
    operation: str, name: str, *, key: str | None = None, user: str = "alice", **extra: Any
) -> dict[str, Any]:
    encryption = {"type": "CustomerKey", "keyRef": {"name": key}} if key else {"type": "SystemKey"}
    obj = {"metadata": {"name": name}, "spec": {"region": "westeurope", "encryption": encryption}}
    request = {
        "kind": {"kind": "VideoAnalyzerAccount"},
        "operation": operation,
        "namespace": "t",
        "name": name,
        "object": obj,
        "oldObject": {"metadata": {"name": name}, "spec": {"region": "westeurope"}}
        if operation == "UPDATE"
        else None,
        "userInfo": {"username": user},
    }
    request.update(extra)
    return request


def _secret(operation: str, user: str) -> dict[str, Any]:
    obj = {"metadata": {"name": "s", "labels": {"videoanalyzer.io/component": "account-key"}}}
    return {
        "kind": {"kind": "Secret"},
        "operation": operation,
        "namespace": "t",
        "object": obj,
        "oldObject": obj,
        "userInfo": {"username": user},
    }


@pytest.mark.parametrize(
    ("request_", "allowed", "words"),
    [
        (_account("UPDATE", "locked"), False, "KeyInaccessible (reason AccessDenied)"),
        (_account("UPDATE", "locked", user=OPERATOR), True, ""),
        (_account("UPDATE", "locked", subResource="status"), True, ""),
        (_account("DELETE", "locked"), True, ""),
        (_account("UPDATE", "fine"), True, ""),
        (_account("CREATE", "new", key="ec"), False, "KeyUnsupported"),
        (_account("CREATE", "new", key="good"), True, ""),
        (_account("CREATE", "new", key="far"), False, "region eastus"),
        (_account("CREATE", "new", key="unknown"), True, ""),
        (_account("UPDATE", "fine", key="ec"), False, "KeyUnsupported"),
        (_secret("UPDATE", "alice"), False, "only the video-analyzer operator"),
        (_secret("DELETE", "alice"), False, "Delete the VideoAnalyzerAccount instead"),
        (_secret("DELETE", GC), True, ""),
        (_secret("UPDATE", OPERATOR), True, ""),
    ],
)
def test_verdicts(request_: dict[str, Any], allowed: bool, words: str) -> None:
    verdict = admission.review(request_, VIEW)
    assert verdict.allowed is allowed
    assert words in verdict.message


def test_updates_during_deletion_pass_even_when_locked() -> None:
    request = _account("UPDATE", "locked")
    request["object"]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert admission.review(request, VIEW).allowed


def test_a_no_op_apply_passes_even_when_locked_and_any_change_does_not() -> None:
    """GitOps tools re-apply and dry-run the unchanged desired state: that changes nothing, so it passes."""
    request = _account("UPDATE", "locked")
    request["oldObject"] = {
        "metadata": {"name": "locked", "labels": {"team": "blue"}, "resourceVersion": "7"},
        "spec": request["object"]["spec"],
    }
    request["object"]["metadata"].update(labels={"team": "blue"}, resourceVersion="7", managedFields=[{}])
    assert admission.review(request, VIEW).allowed
    request["object"]["metadata"]["labels"] = {"team": "red"}
    assert not admission.review(request, VIEW).allowed
    request["object"]["metadata"]["labels"] = {"team": "blue"}
    request["object"]["spec"] = {**request["object"]["spec"], "region": "eastus"}
    assert not admission.review(request, VIEW).allowed
