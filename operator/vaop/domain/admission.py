"""Admission decisions, pure: an AdmissionReview request and the operator's in-memory view in, a verdict out.

No vault is called here: what is known about accounts and keys comes from the last reconciliations
and checks (the key monitor, the Kopf indices), so admission stays fast and never waits on a vault.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import conditions, labels, models
from .keys import KEY_REASONS


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    message: str = ""
    reason: str = ""


ALLOW = Verdict(True)
# Deletions of account-key Secrets by these are garbage collection of a deleted account, or of its namespace.
GARBAGE_COLLECTOR = "system:serviceaccount:kube-system:generic-garbage-collector"
NAMESPACE_CONTROLLER = "system:serviceaccount:kube-system:namespace-controller"
SYSTEM_DELETERS = frozenset({GARBAGE_COLLECTOR, NAMESPACE_CONTROLLER})


@dataclass(frozen=True)
class View:
    """What admission knows. Every lookup takes the request's namespace: references never cross it."""

    account_state: Mapping[tuple[str, str], tuple[str, str]]  # (ns, name) -> (state, Ready reason)
    customer_keys: Mapping[tuple[str, str], Mapping[str, Any]]  # (ns, name) -> {"spec", "status"}
    vaults: Mapping[str, Mapping[str, Mapping[str, Any]]]  # ns -> name -> spec
    operator_username: str
    system_deleters: frozenset[str]  # garbage collector and namespace controller


def review(request: Mapping[str, Any], view: View) -> Verdict:
    kind = request.get("kind", {}).get("kind")
    if kind == "VideoAnalyzerAccount":
        return _account(request, view)
    if kind == "Secret":
        return _account_key_secret(request, view)
    return ALLOW


def _account(request: Mapping[str, Any], view: View) -> Verdict:
    operation = request.get("operation")
    namespace = request.get("namespace", "")
    name = request.get("name") or (request.get("object") or {}).get("metadata", {}).get("name", "")
    if operation == "DELETE" or request.get("subResource") or _username(request) == view.operator_username:
        return ALLOW
    obj = request.get("object") or {}
    if operation == "UPDATE" and obj.get("metadata", {}).get("deletionTimestamp"):
        return ALLOW  # finalizer removal and other writes that deletion needs
    if operation == "UPDATE" and _changes_nothing(obj, request.get("oldObject") or {}):
        return ALLOW  # GitOps tools re-apply (and dry-run) the unchanged desired state all the time
    if operation == "UPDATE":
        state, reason = view.account_state.get((namespace, name), ("", ""))
        if state == models.AccountState.KEY_INACCESSIBLE.value:
            return Verdict(
                False,
                f"VideoAnalyzerAccount {namespace}/{name} is KeyInaccessible (reason {reason}): "
                "only get, list "
                "and delete are allowed until access to its customer key returns; see its KeyInaccessible "
                "condition for what to fix",
                conditions.KEY_INACCESSIBLE,
            )
    spec = models.AccountSpec.parse(obj.get("spec"))
    old_spec = (
        models.AccountSpec.parse((request.get("oldObject") or {}).get("spec"))
        if operation == "UPDATE"
        else None
    )
    if spec.encryption.key_ref is None or (old_spec is not None and old_spec.encryption == spec.encryption):
        return ALLOW
    return _target_key(namespace, spec, view)


_CHANGEABLE_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")


def _changes_nothing(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """The update leaves spec and the user-set metadata as they were (a no-op apply)."""
    new_meta, old_meta = new.get("metadata") or {}, old.get("metadata") or {}
    return new.get("spec") == old.get("spec") and all(
        (new_meta.get(field) or None) == (old_meta.get(field) or None) for field in _CHANGEABLE_METADATA
    )


def _target_key(namespace: str, spec: models.AccountSpec, view: View) -> Verdict:
    """An account may be created on, or moved to, a CustomerKey only if that key is usable."""
    assert spec.encryption.key_ref is not None
    key_name = spec.encryption.key_ref.name
    key = view.customer_keys.get((namespace, key_name))
    if key is None:
        return ALLOW  # not created yet: the account will wait for it with CustomerKeyNotFound
    key_spec = models.CustomerKeySpec.parse(key.get("spec"))
    vault = view.vaults.get(namespace, {}).get(key_spec.vault_ref.name)
    if vault is not None and vault.get("region") != spec.region:
        return Verdict(
            False,
            f"CustomerKey {key_name} is in KeyVault {key_spec.vault_ref.name} "
            f"in region {vault.get('region')}, "
            f"but the account is in {spec.region}; use a key from a vault in {spec.region}",
            conditions.Reason.REGION_MISMATCH,
        )
    ready = conditions.find((key.get("status") or {}).get("conditions"), conditions.READY)
    if ready is not None and ready.get("status") == "False" and ready.get("reason") in KEY_REASONS:
        return Verdict(
            False,
            f"CustomerKey {key_name} cannot wrap account keys ({ready['reason']}): "
            f"{ready.get('message', '')}",
            str(ready["reason"]),
        )
    return ALLOW


def _account_key_secret(request: Mapping[str, Any], view: View) -> Verdict:
    obj = request.get("object") or request.get("oldObject") or {}
    secret_labels = obj.get("metadata", {}).get("labels") or {}
    if secret_labels.get(labels.COMPONENT) != labels.ACCOUNT_KEY_COMPONENT:
        return ALLOW
    user = _username(request)
    if user == view.operator_username:
        return ALLOW
    if request.get("operation") == "DELETE":
        if user in view.system_deleters:
            return ALLOW
        return Verdict(
            False,
            "this Secret holds a wrapped account key; deleting it would lose the key. Delete the "
            "VideoAnalyzerAccount instead (the Secret goes with it)",
            "AccountKeyProtected",
        )
    return Verdict(
        False,
        "this Secret holds a wrapped account key and only the video-analyzer operator may change it",
        "AccountKeyProtected",
    )


def _username(request: Mapping[str, Any]) -> str:
    return str((request.get("userInfo") or {}).get("username", ""))
