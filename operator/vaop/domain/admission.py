"""Admission decisions, pure: an AdmissionReview request and the operator's in-memory view in, a verdict out.

No vault is called here: what is known about accounts and keys comes from the last reconciliations
and checks (the key monitor, the Kopf indices), so admission stays fast and never waits on a vault.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import conditions, labels, models
from ..crypto import envelope
from ..dataapi import kinds
from ..providers import base
from . import accounts as account_decisions
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
RESTORE_REFUSED = "RestoreRefused"


@dataclass(frozen=True)
class AccountFacts:
    """What admission knows of one account beyond its state."""

    uid: str
    account_id: str  # its account-id annotation ("" until the operator sets it)
    active: bool


@dataclass(frozen=True)
class View:
    """What admission knows. Every lookup takes the request's namespace: references never cross it."""

    account_state: Mapping[tuple[str, str], tuple[str, str]]  # (ns, name) -> (state, Ready reason)
    accounts: Mapping[tuple[str, str], AccountFacts]  # (ns, name) -> uid, account ID
    customer_keys: Mapping[tuple[str, str], Mapping[str, Any]]  # (ns, name) -> {"spec", "status"}
    vaults: Mapping[str, Mapping[str, Mapping[str, Any]]]  # ns -> name -> spec
    operator_username: str
    system_deleters: frozenset[str]  # garbage collector and namespace controller
    # Who restores backups (Velero's ServiceAccount by default): they may create account-key Secrets
    # and SealedObjects that verify for their account, and accounts whatever their key's state.
    restore_identities: frozenset[str] = frozenset()
    # The infrastructure key versions of this cluster (version -> key), to verify restored envelopes;
    # None while they cannot be read.
    infrastructure_keys: Mapping[str, bytes] | None = None
    # Why the platform will not use a vault so configured (an address or a PKCS#11 module it does not
    # allow, a provider it lacks), or None.
    vault_refusal: Callable[[models.KeyVaultSpec], base.Refusal | None] = lambda _: None


def review(request: Mapping[str, Any], view: View) -> Verdict:
    kind = request.get("kind", {}).get("kind")
    if kind == "VideoAnalyzerAccount":
        return _account(request, view)
    if kind == "Secret":
        return _account_key_secret(request, view)
    if kind == "SealedObject":
        return _sealed_object(request, view)
    if kind == "KeyVault":
        return _key_vault(request, view)
    return ALLOW


def _key_vault(request: Mapping[str, Any], view: View) -> Verdict:
    """A KeyVault the platform will not use is refused when written, so the tenant learns at once
    (and the operator never connects where the platform does not allow)."""
    obj, old = request.get("object") or {}, request.get("oldObject") or {}
    if request.get("operation") not in ("CREATE", "UPDATE") or obj.get("spec") == old.get("spec"):
        return ALLOW  # deletion, status, finalizers and no-op applies change no address
    refused = view.vault_refusal(models.KeyVaultSpec.parse(obj.get("spec")))
    if refused is None:
        return ALLOW
    name = (obj.get("metadata") or {}).get("name") or request.get("name", "")
    return Verdict(False, f"KeyVault {name}: {refused.message}", refused.reason)


def _account_passes(request: Mapping[str, Any], view: View) -> bool:
    """Account requests allowed whatever the account's state."""
    operation, user = request.get("operation"), _username(request)
    if operation == "DELETE" or request.get("subResource") or user == view.operator_username:
        return True
    obj = request.get("object") or {}
    if operation == "UPDATE" and obj.get("metadata", {}).get("deletionTimestamp"):
        return True  # finalizer removal and other writes that deletion needs
    if operation == "UPDATE" and _changes_nothing(obj, request.get("oldObject") or {}):
        return True  # GitOps tools re-apply (and dry-run) the unchanged desired state all the time
    return operation == "CREATE" and user in view.restore_identities  # a restore brings back what was


def _account(request: Mapping[str, Any], view: View) -> Verdict:
    operation = request.get("operation")
    namespace = request.get("namespace", "")
    name = request.get("name") or (request.get("object") or {}).get("metadata", {}).get("name", "")
    if _account_passes(request, view):
        return ALLOW
    obj = request.get("object") or {}
    if operation == "UPDATE":
        refused = _locked(namespace, name, view) or _account_id_moved(
            namespace, name, obj, request.get("oldObject") or {}, view
        )
        if refused is not None:
            return refused
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


def _locked(namespace: str, name: str, view: View) -> Verdict | None:
    state, reason = view.account_state.get((namespace, name), ("", ""))
    if state != models.AccountState.KEY_INACCESSIBLE.value:
        return None
    return Verdict(
        False,
        f"VideoAnalyzerAccount {namespace}/{name} is KeyInaccessible (reason {reason}): only get, list and "
        "delete are allowed until access to its customer key returns; see its KeyInaccessible condition "
        "for what to fix",
        conditions.KEY_INACCESSIBLE,
    )


def _account_id_of(obj: Mapping[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(labels.ANNOTATION_ACCOUNT_ID, ""))


def _account_id_moved(
    namespace: str, name: str, new: Mapping[str, Any], old: Mapping[str, Any], view: View
) -> Verdict | None:
    """An Active account holds the key of its account ID: that ID cannot change or go under it. (An
    account not Active may be given an ID: that is how a person adopts a restored key.)"""
    before, after = _account_id_of(old), _account_id_of(new)
    facts = view.accounts.get((namespace, name))
    if before == after or not before or facts is None or not facts.active:
        return None
    return Verdict(
        False,
        f"VideoAnalyzerAccount {namespace}/{name} holds the account key of account ID {before} "
        f"(annotation {labels.ANNOTATION_ACCOUNT_ID}), which cannot change while the account uses it; "
        f"keep the annotation as it is (a GitOps source should carry {before}, or not set it)",
        "AccountIDImmutable",
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


# ---- account-key Secrets ---------------------------------------------------------------------------


def _account_key_secret(request: Mapping[str, Any], view: View) -> Verdict:
    obj = request.get("object") or request.get("oldObject") or {}
    secret_labels = obj.get("metadata", {}).get("labels") or {}
    if secret_labels.get(labels.COMPONENT) != labels.ACCOUNT_KEY_COMPONENT:
        return ALLOW
    user = _username(request)
    if user == view.operator_username or _restores_managed_fields(request, view):
        return ALLOW
    operation = request.get("operation")
    if operation == "DELETE":
        if user in view.system_deleters or _unheld(request.get("namespace", ""), obj, view):
            return ALLOW
        return Verdict(
            False,
            "this Secret holds a wrapped account key; deleting it would lose the key. Delete the "
            "VideoAnalyzerAccount instead (the Secret goes with it)",
            "AccountKeyProtected",
        )
    if operation == "CREATE" and user in view.restore_identities:
        problem = _restored_secret_problem(request.get("namespace", ""), obj, view)
        return ALLOW if problem is None else Verdict(False, problem, RESTORE_REFUSED)
    return Verdict(
        False,
        "this Secret holds a wrapped account key and only the video-analyzer operator may change it"
        + (" (a restore may create it, not change it)" if user in view.restore_identities else ""),
        "AccountKeyProtected",
    )


def _unheld(namespace: str, secret: Mapping[str, Any], view: View) -> bool:
    """No account holds this Secret although its account exists: a restored key the account does not
    claim (AccountKeyNotAdopted), which a person may delete to start the account anew."""
    meta = secret.get("metadata") or {}
    account = (meta.get("labels") or {}).get(labels.ACCOUNT, "")
    facts = view.accounts.get((namespace, account))
    if facts is None:
        return False  # its account may be on its way (a restore): keep it
    try:
        held = account_decisions.envelope_in(secret.get("data")).account
    except envelope.EnvelopeError:
        return False
    owners = tuple(str(o.get("uid", "")) for o in meta.get("ownerReferences") or ())
    refused = account_decisions.not_held(
        namespace=namespace,
        name=account,
        account_id=facts.account_id,
        account_uid=facts.uid,
        held=held,
        secret_owners=owners,
        secret_name=str(meta.get("name", "")),
    )
    return refused is not None


def _restored_secret_problem(namespace: str, secret: Mapping[str, Any], view: View) -> str | None:
    """Why a restored account-key Secret may not be created, or None: it must be an account-key
    Secret of its account, holding an envelope sealed for that account (namespace, name, account ID)
    with this cluster's infrastructure key."""
    meta = secret.get("metadata") or {}
    name, account = str(meta.get("name", "")), (meta.get("labels") or {}).get(labels.ACCOUNT, "")
    if name != models.account_key_secret_name(account):
        return f"Secret {name} is labelled for account {account!r}, whose key Secret is named " + (
            f"{models.account_key_secret_name(account)}"
        )
    if secret.get("type") != labels.ACCOUNT_KEY_SECRET_TYPE:
        return f"Secret {name} is of type {secret.get('type')}, not {labels.ACCOUNT_KEY_SECRET_TYPE}"
    try:
        sealed = account_decisions.envelope_in(secret.get("data"))
    except envelope.EnvelopeError as error:
        return f"Secret {name} does not hold a valid envelope ({error})"
    held = sealed.account
    if (held.namespace, held.name) != (namespace, account):
        return (
            f"Secret {name} holds the account key of account {held.namespace}/{held.name} (account ID "
            f"{held.id}), and is restored as the key of {namespace}/{account}: an account key never moves "
            "to another namespace or name (restore it where it was, without a namespace mapping)"
        )
    facts = view.accounts.get((namespace, account))
    if facts is not None and facts.account_id and facts.account_id != held.id:
        return (
            f"Secret {name} holds the key of account ID {held.id}, but VideoAnalyzerAccount "
            f"{namespace}/{account} is account ID {facts.account_id}: restore the Secret from the same "
            "backup as the account"
        )
    return outer_layer_problem(sealed, view.infrastructure_keys)


def outer_layer_problem(
    sealed: envelope.Envelope, infrastructure_keys: Mapping[str, bytes] | None
) -> str | None:
    """Why this cluster's infrastructure key does not open the envelope's outer layer, or None."""
    restore_keys = (
        "restore the platform keys of the cluster the backup comes from first (the Secrets labelled "
        "videoanalyzer.io/component=platform-key in the operator's namespace; "
        "docs/operations.md#migrate-to-another-cluster)"
    )
    if infrastructure_keys is None:
        return (
            f"{conditions.Reason.PLATFORM_KEY_MISSING}: the platform keys cannot be read yet; {restore_keys}"
        )
    outer_key = infrastructure_keys.get(sealed.outer_key_version)
    if outer_key is None:
        return (
            f"{conditions.Reason.PLATFORM_KEY_MISSING}: the envelope is sealed with infrastructure key "
            f"version {sealed.outer_key_version}, which this cluster does not have; {restore_keys}"
        )
    try:
        envelope.unseal(sealed, account=sealed.account, outer_key=outer_key)
    except envelope.OuterKeyMismatch as error:
        return f"{conditions.Reason.PLATFORM_KEY_MISSING}: {error}; {restore_keys}"
    except envelope.EnvelopeError as error:
        return f"the envelope does not verify: {error}"
    return None


# ---- SealedObjects (the data API's storage) ------------------------------------------------------


def _sealed_object(request: Mapping[str, Any], view: View) -> Verdict:
    user = _username(request)
    if user == view.operator_username or request.get("operation") == "DELETE":
        return ALLOW
    if request.get("operation") == "CREATE" and user in view.restore_identities:
        problem = _restored_object_problem(request.get("namespace", ""), request.get("object") or {}, view)
        return ALLOW if problem is None else Verdict(False, problem, RESTORE_REFUSED)
    if _restores_managed_fields(request, view):
        return ALLOW
    return Verdict(
        False,
        "SealedObjects hold the sealed content of AccessPolicies and Videos: only the video-analyzer "
        f"operator writes them (use the data API, {kinds.GROUP}), and a restore may create them",
        "SealedObjectProtected",
    )


def _restored_object_problem(namespace: str, obj: Mapping[str, Any], view: View) -> str | None:
    """Why a restored SealedObject may not be created, or None: its routing fields agree with one
    another and with this namespace, and it is sealed for its account's ID. (Its content verifies
    only with the account key, when read: a SealedObject that does not open shows as UnsealFailed.)"""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    kind = kinds.BY_KIND.get(str(spec.get("kind")))
    name = str(meta.get("name", ""))
    if kind is None:
        return f"SealedObject {name} is of kind {spec.get('kind')!r}, which the data API does not serve"
    kept_as = kind.storage_name(str(spec.get("name", "")))
    if name != kept_as:
        return f"SealedObject {name} is not where {kind.kind} {spec.get('name')} is kept ({kept_as})"
    sealed_in = spec.get("namespace", namespace)
    if sealed_in != namespace:
        return (
            f"SealedObject {name} was sealed in namespace {sealed_in} and is restored into {namespace}: "
            "sealed data never moves to another namespace (restore it where it was, without a namespace "
            "mapping)"
        )
    meta_labels = meta.get("labels") or {}
    account = str(spec.get("accountName", ""))
    if (meta_labels.get(labels.SEALED_OBJECT_KIND), meta_labels.get(labels.SEALED_OBJECT_ACCOUNT)) != (
        kind.kind,
        account,
    ):
        return f"SealedObject {name}'s labels do not name its kind {kind.kind} and account {account}"
    facts = view.accounts.get((namespace, account))
    sealed_for = str(spec.get("accountID") or spec.get("accountUID") or "")
    if facts is not None and facts.account_id and facts.account_id != sealed_for:
        return (
            f"SealedObject {name} ({kind.kind} {spec.get('name')}) is sealed for account ID {sealed_for}, "
            f"but VideoAnalyzerAccount {namespace}/{account} is account ID {facts.account_id}: restore it "
            "from the same backup as the account"
        )
    return None


_BOOKKEEPING = ("managedFields", "resourceVersion", "generation")


def _restores_managed_fields(request: Mapping[str, Any], view: View) -> bool:
    """A restore's second write of what it created: Velero patches the restored object's
    managedFields back in, and nothing else (the content must stay as verified at its creation)."""
    if request.get("operation") != "UPDATE" or _username(request) not in view.restore_identities:
        return False

    def content(obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _BOOKKEEPING}
        return {**obj, "metadata": meta}

    return content(request.get("object") or {}) == content(request.get("oldObject") or {})


def _username(request: Mapping[str, Any]) -> str:
    return str((request.get("userInfo") or {}).get("username", ""))
