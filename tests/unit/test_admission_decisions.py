"""Admission verdicts from the in-memory view, as a table."""

from __future__ import annotations

import base64
import dataclasses
import os
from typing import Any

import pytest

from vaop import labels, models
from vaop.crypto import envelope
from vaop.dataapi import kinds
from vaop.domain import admission
from vaop.providers import base
from vaop.providers.addresses import AddressPolicy

OPERATOR = "system:serviceaccount:vaop-system:video-analyzer-operator"
GC = "system:serviceaccount:kube-system:generic-garbage-collector"
VELERO = "system:serviceaccount:velero:velero"
INFRA = os.urandom(32)

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
    accounts={
        ("t", "locked"): admission.AccountFacts("uid-locked", "id-locked", active=False),
        ("t", "fine"): admission.AccountFacts("uid-fine", "id-fine", active=True),
        ("t", "restoring"): admission.AccountFacts("uid-restoring", "id-1", active=False),
        ("t", "unclaimed"): admission.AccountFacts("uid-unclaimed", "", active=False),
    },
    operator_username=OPERATOR,
    system_deleters=frozenset({GC}),
    restore_identities=frozenset({VELERO}),
    infrastructure_keys={"1": INFRA},
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


# ---- restores: the backup identity brings back account-key Secrets and SealedObjects ----------------


def _restored_secret(
    *,
    account: str = "restoring",
    held: envelope.AccountIdentity | None = None,
    infra: bytes = INFRA,
    infra_version: str = "1",
    operation: str = "CREATE",
    user: str = VELERO,
    owners: tuple[str, ...] = (),
) -> dict[str, Any]:
    identity = held or envelope.AccountIdentity("t", account, "id-1")
    inner = envelope.InnerKeyRef("SystemKey", "kubernetes", "", "system-key", "1", "RSA-OAEP-256")
    sealed = envelope.seal(
        os.urandom(256), account=identity, inner=inner, outer_key=infra, outer_key_version=infra_version
    )
    obj = {
        "metadata": {
            "name": f"{account}-account-key",
            "labels": {labels.COMPONENT: labels.ACCOUNT_KEY_COMPONENT, labels.ACCOUNT: account},
            "ownerReferences": [{"uid": uid} for uid in owners],
        },
        "type": labels.ACCOUNT_KEY_SECRET_TYPE,
        "data": {labels.ENVELOPE_DATA_KEY: base64.b64encode(envelope.encode(sealed)).decode()},
    }
    changed = {**obj, "data": {labels.ENVELOPE_DATA_KEY: "b3RoZXI="}} if operation == "UPDATE" else obj
    return {
        "kind": {"kind": "Secret"},
        "operation": operation,
        "namespace": "t",
        "object": None if operation == "DELETE" else changed,
        "oldObject": obj if operation != "CREATE" else None,
        "userInfo": {"username": user},
    }


@pytest.mark.parametrize(
    ("request_", "allowed", "words"),
    [
        (_restored_secret(), True, ""),  # the account is account ID id-1
        (_restored_secret(account="not-yet-restored"), True, ""),  # Velero restores Secrets first
        (_restored_secret(user="alice"), False, "only the video-analyzer operator"),
        (_restored_secret(operation="UPDATE"), False, "a restore may create it, not change it"),
        (
            _restored_secret(held=envelope.AccountIdentity("elsewhere", "restoring", "id-1")),
            False,
            "holds the account key of account elsewhere/restoring (account ID id-1), and is restored as the "
            "key of t/restoring",
        ),
        (
            _restored_secret(held=envelope.AccountIdentity("t", "other", "id-1")),
            False,
            "holds the account key of account t/other",
        ),
        (
            _restored_secret(held=envelope.AccountIdentity("t", "restoring", "id-2")),
            False,
            "holds the key of account ID id-2, but VideoAnalyzerAccount t/restoring is account ID id-1",
        ),
        (_restored_secret(infra=os.urandom(32)), False, "PlatformKeyMissing: the envelope was sealed with"),
        (_restored_secret(infra_version="7"), False, "infrastructure key version 7, which this cluster does"),
        # Deleting a Secret: only one that the existing account of its name does not hold.
        (_restored_secret(account="unclaimed", operation="DELETE", user="alice"), True, ""),
        (
            _restored_secret(
                account="unclaimed", operation="DELETE", user="alice", owners=("uid-unclaimed",)
            ),
            False,
            "Delete the VideoAnalyzerAccount instead",
        ),
        (_restored_secret(operation="DELETE", user="alice"), False, "deleting it would lose the key"),
        (_restored_secret(account="absent", operation="DELETE", user="alice"), False, "would lose the key"),
    ],
)
def test_restored_account_key_secrets(request_: dict[str, Any], allowed: bool, words: str) -> None:
    verdict = admission.review(request_, VIEW)
    assert (verdict.allowed, words in verdict.message) == (allowed, True), verdict.message


def test_a_restore_may_put_managed_fields_back_and_change_nothing_else() -> None:
    """Velero patches a restored object's managedFields in after creating it."""
    request = _restored_secret(operation="UPDATE")
    created = request["oldObject"]
    request["object"] = {**created, "metadata": {**created["metadata"], "managedFields": [{"manager": "x"}]}}
    assert admission.review(request, VIEW).allowed
    request["object"]["data"] = {labels.ENVELOPE_DATA_KEY: "b3RoZXI="}
    assert not admission.review(request, VIEW).allowed
    request["userInfo"] = {"username": "alice"}
    request["object"] = {**created, "metadata": {**created["metadata"], "managedFields": [{"manager": "x"}]}}
    assert not admission.review(request, VIEW).allowed
    sealed = _sealed_object(operation="UPDATE")
    sealed["oldObject"] = sealed["object"]
    sealed["object"] = {**sealed["object"], "metadata": {**sealed["object"]["metadata"], "managedFields": []}}
    assert admission.review(sealed, VIEW).allowed


def test_restored_secrets_wait_for_the_platform_keys() -> None:
    unread = dataclasses.replace(VIEW, infrastructure_keys=None)
    verdict = admission.review(_restored_secret(), unread)
    assert not verdict.allowed
    assert "PlatformKeyMissing" in verdict.message and "restore the platform keys" in verdict.message


def _sealed_object(
    *,
    user: str = VELERO,
    operation: str = "CREATE",
    account: str = "restoring",
    account_id: str = "id-1",
    sealed_in: str = "t",
    name: str = "lobby",
    stored_as: str | None = None,
    kind_label: str = "Video",
) -> dict[str, Any]:
    video = kinds.BY_KIND["Video"]
    obj = {
        "metadata": {
            "name": stored_as or video.storage_name(name),
            "labels": {labels.SEALED_OBJECT_KIND: kind_label, labels.SEALED_OBJECT_ACCOUNT: account},
        },
        "spec": {
            "kind": "Video",
            "name": name,
            "namespace": sealed_in,
            "accountName": account,
            "accountID": account_id,
            "format": 2,
        },
    }
    return {
        "kind": {"kind": "SealedObject"},
        "operation": operation,
        "namespace": "t",
        "object": obj,
        "userInfo": {"username": user},
    }


@pytest.mark.parametrize(
    ("request_", "allowed", "words"),
    [
        (_sealed_object(), True, ""),
        (_sealed_object(account="absent", account_id="any"), True, ""),  # its account comes later
        (_sealed_object(user=OPERATOR, operation="UPDATE"), True, ""),
        (_sealed_object(user="alice", operation="DELETE"), True, ""),
        (_sealed_object(user="alice"), False, "only the video-analyzer operator writes them"),
        (_sealed_object(operation="UPDATE"), False, "only the video-analyzer operator writes them"),
        (_sealed_object(account_id="id-9"), False, "sealed for account ID id-9, but VideoAnalyzerAccount"),
        (
            _sealed_object(sealed_in="elsewhere"),
            False,
            "sealed in namespace elsewhere and is restored into t",
        ),
        (_sealed_object(stored_as="video-somewhere-else"), False, "is not where Video lobby is kept"),
        (_sealed_object(kind_label="AccessPolicy"), False, "labels do not name its kind Video"),
    ],
)
def test_restored_sealed_objects(request_: dict[str, Any], allowed: bool, words: str) -> None:
    verdict = admission.review(request_, VIEW)
    assert (verdict.allowed, words in verdict.message) == (allowed, True), verdict.message


def _annotated(name: str, before: str | None, after: str | None) -> dict[str, Any]:
    request = _account("UPDATE", name)
    request["oldObject"] = {**request["object"], "metadata": {"name": name}}
    if before is not None:
        request["oldObject"]["metadata"]["annotations"] = {labels.ANNOTATION_ACCOUNT_ID: before}
    request["object"] = {**request["object"], "metadata": {"name": name}}
    if after is not None:
        request["object"]["metadata"]["annotations"] = {labels.ANNOTATION_ACCOUNT_ID: after}
    return request


@pytest.mark.parametrize(
    ("request_", "allowed"),
    [
        (_annotated("fine", "id-fine", "id-other"), False),  # an Active account's ID is fixed
        (_annotated("fine", "id-fine", None), False),
        (_annotated("unclaimed", None, "id-1"), True),  # adopting a restored key
        (_annotated("restoring", "id-1", "id-2"), True),  # not Active: a person may correct it
    ],
)
def test_the_account_id_of_an_account_that_uses_its_key_does_not_change(
    request_: dict[str, Any], allowed: bool
) -> None:
    verdict = admission.review(request_, VIEW)
    assert verdict.allowed is allowed, verdict.message
    if not allowed:
        assert "holds the account key of account ID id-fine" in verdict.message


def test_a_restore_creates_an_account_whatever_its_keys_state() -> None:
    assert not admission.review(_account("CREATE", "back", key="ec"), VIEW).allowed
    assert admission.review(_account("CREATE", "back", key="ec", user=VELERO), VIEW).allowed


def _key_vault(operation: str, address: str, *, old_address: str | None = None) -> dict[str, Any]:
    def vault(at: str) -> dict[str, Any]:
        spec = {"region": "westeurope", "provider": {"openbao": {"address": at, "role": "t"}}}
        return {"metadata": {"name": "bao"}, "spec": spec}

    return {
        "kind": {"kind": "KeyVault"},
        "operation": operation,
        "namespace": "t",
        "name": "bao",
        "object": vault(address),
        "oldObject": vault(old_address) if old_address else None,
        "userInfo": {"username": "alice"},
    }


def test_a_key_vault_at_an_address_the_platform_refuses_is_denied_naming_it() -> None:
    policy = AddressPolicy(refused=("10.96.0.0/12",))

    def refusal(spec: models.KeyVaultSpec) -> base.Refusal | None:
        assert spec.provider.openbao is not None
        found = policy.check_url(spec.provider.openbao.address, field_path="spec.provider.openbao.address")
        return None if found is None else base.Refusal("VaultAddressRefused", found)

    view = dataclasses.replace(VIEW, vault_refusal=refusal)
    denied = admission.review(_key_vault("CREATE", "http://169.254.169.254"), view)
    assert (denied.allowed, denied.reason) == (False, "VaultAddressRefused")
    assert denied.message.startswith("KeyVault bao: spec.provider.openbao.address http://169.254.169.254:")
    assert admission.review(
        _key_vault("UPDATE", "https://10.96.0.1", old_address="https://v.example"), view
    ).reason
    assert admission.review(_key_vault("CREATE", "https://vault.tenant.example"), view).allowed
    # An unchanged spec (a re-apply, a finalizer removed) is let by, whatever the policy says now.
    assert admission.review(
        _key_vault("UPDATE", "http://169.254.169.254", old_address="http://169.254.169.254"), view
    ).allowed
