"""Pure decisions about an account: what to do with its key, and what its status says.

Nothing here does I/O: the reconciler observes (Secret present? who wrapped it? which key should?),
asks ``decide`` what to do, does it, and asks the ``outcome_*`` functions what to write.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .. import conditions, labels
from ..conditions import Condition, Reason
from ..crypto import envelope
from ..models import AccountState, EncryptionType


class Action(StrEnum):
    CREATE = "Create"  # no key yet: make one and wrap it
    REWRAP = "Rewrap"  # wrapped by another key than the target: unwrap with the old, wrap with the new
    KEEP = "Keep"  # wrapped by the target already
    LOST = "Lost"  # a key existed but its Secret is gone: never mint a new one
    AWAIT_RESTORE = "AwaitRestore"  # the account has an ID, so had a key: wait for its Secret


def decide(
    *,
    secret_present: bool,
    key_existed: bool,
    has_account_id: bool,
    replace_requested: bool,
    current: envelope.InnerKeyRef | None,
    target_same: bool,
) -> Action:
    """What to do, given what was observed. ``target_same``: the current envelope is wrapped by the
    target. ``has_account_id``: the account carries its account-id annotation, so it had a key (a
    restored account, or one whose Secret is being restored). ``replace_requested``: a person asked,
    naming that ID, for a new key in place of the lost one."""
    if not secret_present:
        if replace_requested:
            return Action.CREATE
        if key_existed:
            return Action.LOST
        return Action.AWAIT_RESTORE if has_account_id else Action.CREATE
    if current is not None and not target_same:
        return Action.REWRAP
    return Action.KEEP


def not_held(
    *,
    namespace: str,
    name: str,
    account_id: str,
    account_uid: str,
    held: envelope.AccountIdentity,
    secret_owners: tuple[str, ...],
    secret_name: str,
) -> Outcome | None:
    """Why the account may not use the envelope in its Secret, or None when it holds it.

    An account holds the envelope of its own namespace and name when its account-id annotation
    names the envelope's account ID (restored together), or, without an annotation, when the
    Secret was made for this very account object (its ownerReference: made here, or not yet
    annotated). Anything else is another account's key, never opened on a guess: an account deleted
    and made again under the same name does not get the old key by accident."""
    if (held.namespace, held.name) != (namespace, name):
        return outcome_error(
            Reason.ACCOUNT_KEY_OF_ANOTHER_ACCOUNT,
            f"Secret {secret_name} holds the account key of account {held.namespace}/{held.name} (account ID "
            f"{held.id}), not of {namespace}/{name}: it was restored under another name or namespace, which "
            f"an account key cannot move to. Restore this account's own Secret, or delete {secret_name}",
        )
    if account_id and account_id != held.id:
        return outcome_error(
            Reason.ACCOUNT_KEY_OF_ANOTHER_ACCOUNT,
            f"Secret {secret_name} holds the account key of account ID {held.id}, but this account is "
            f"account ID {account_id} (annotation {labels.ANNOTATION_ACCOUNT_ID}). Restore the Secret of "
            f"account ID {account_id} from the backup this account came from; or, if the key in "
            f"{secret_name} is this account's, set the annotation to {held.id}",
        )
    if not account_id and account_uid not in secret_owners:
        message = (
            f"Secret {secret_name} holds the account key of an account of this name with account ID "
            f"{held.id}, and this account carries no account ID: it was restored without its "
            f"{labels.ANNOTATION_ACCOUNT_ID} annotation (from a GitOps repository, say), or it is a new "
            "account under an old name. The operator opens another account's key only when told to. If "
            f"this account is that one, run: kubectl annotate videoanalyzeraccount {name} -n {namespace} "
            f"{labels.ANNOTATION_ACCOUNT_ID}={held.id} ; if it is a new account, delete Secret {secret_name} "
            "(or name the account differently) and a new key is made"
        )
        return _account_key_outcome(AccountState.PROVISIONING, Reason.ACCOUNT_KEY_NOT_ADOPTED, message)
    return None


def envelope_in(data: dict[str, str] | None) -> envelope.Envelope:
    """The envelope an account-key Secret's data holds (base64, as the API returns it)."""
    raw = (data or {}).get(labels.ENVELOPE_DATA_KEY)
    if raw is None:
        raise envelope.EnvelopeError(f"it has no {labels.ENVELOPE_DATA_KEY!r} field")
    try:
        return envelope.decode(base64.b64decode(raw, validate=True))
    except binascii.Error:
        raise envelope.EnvelopeError(f"its {labels.ENVELOPE_DATA_KEY!r} field is not base64") from None


def sentence(text: str) -> str:
    """Messages are joined from parts: make each part end like a sentence."""
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def describe(ref: envelope.InnerKeyRef) -> str:
    if ref.type == EncryptionType.SYSTEM_KEY.value:
        return f"the system key (version {ref.key_version})"
    where = f"key {ref.key_name} version {ref.key_version} in KeyVault {ref.key_vault}"
    return f"{where} (as ServiceAccount {ref.identity})" if ref.identity else where


def account_key_status(
    *,
    secret_name: str,
    key_check_value: str,
    sealed: envelope.Envelope,
    wrapped_at: str,
    customer_key: str | None,
) -> dict[str, Any]:
    inner = sealed.inner
    wrapped_by: dict[str, Any] = {
        "type": inner.type,
        "keyName": inner.key_name,
        "keyVersion": inner.key_version,
    }
    if inner.key_vault:
        wrapped_by["keyVault"] = inner.key_vault
    if inner.type == EncryptionType.CUSTOMER_KEY.value:
        if customer_key:
            wrapped_by["customerKey"] = customer_key
        if inner.identity:
            wrapped_by["identity"] = inner.identity
    return {
        "secretName": secret_name,
        "keyCheckValue": key_check_value,
        "wrappedBy": wrapped_by,
        "algorithm": sealed.algorithm,
        "wrappedAt": wrapped_at,
    }


@dataclass(frozen=True)
class Outcome:
    state: AccountState
    conditions: list[Condition]
    account_key: dict[str, Any] | None = None  # None: leave status.accountKey as it is


# Provisioning, but waiting for a person: kstatus' Stalled rather than Reconciling.
_NEEDS_A_PERSON = frozenset({Reason.ACCOUNT_KEY_NOT_ADOPTED})


def in_progress(outcome: Outcome) -> bool:
    """The operator is still working on it (kstatus' Reconciling): provisioning (waiting for a
    restore to bring its Secret back among it), or an account that is not locked retrying a flaky
    vault. Anything else that is not Ready needs a person (Stalled)."""
    if outcome.state is AccountState.PROVISIONING:
        return outcome.conditions[0].reason not in _NEEDS_A_PERSON
    degraded = any(c.type == conditions.VAULT_DEGRADED and c.status == "True" for c in outcome.conditions)
    return degraded and outcome.state is not AccountState.KEY_INACCESSIBLE


def outcome_wrapped(wrapper: envelope.InnerKeyRef, account_key: dict[str, Any]) -> Outcome:
    where = describe(wrapper)
    return Outcome(
        AccountState.ACTIVE,
        [
            Condition(conditions.READY, "True", Reason.READY, f"The account key is wrapped by {where}."),
            Condition(
                conditions.ACCOUNT_KEY_READY, "True", Reason.WRAPPED, f"Wrapped by {where}, double encrypted."
            ),
            Condition(
                conditions.KEY_INACCESSIBLE,
                "False",
                Reason.KEY_ACCESSIBLE,
                f"{where[0].upper()}{where[1:]} is usable.",
            ),
            Condition(conditions.VAULT_DEGRADED, "False", Reason.KEY_ACCESSIBLE, "The vault answers."),
        ],
        account_key,
    )


def with_expiry(outcome: Outcome, note: str | None, *, shown: bool) -> Outcome:
    """``outcome`` with KeyExpiring: True with ``note`` while the wrapping version expires within the
    warning time (or has expired); False once it no longer does, if it was ``shown``; else absent."""
    if note is not None:
        expiring = Condition(conditions.KEY_EXPIRING, "True", Reason.KEY_VERSION_EXPIRING, note)
    elif shown:
        message = "The key version that wraps the account key does not expire within the warning time."
        expiring = Condition(conditions.KEY_EXPIRING, "False", Reason.KEY_VERSION_VALID, message)
    else:
        return outcome
    return Outcome(outcome.state, [*outcome.conditions, expiring], outcome.account_key)


def outcome_key_problem(
    *,
    reason: str,
    message: str,
    definitive: bool,
    inaccessible: bool,
    current: envelope.InnerKeyRef | None,
    locked: bool = False,
) -> Outcome:
    """The target key cannot be used.

    ``inaccessible``: the reason means the key is gone or refused (not a configuration problem).
    ``locked``: the account is KeyInaccessible already.
    The account is locked (KeyInaccessible) only when the key that is unusable is the one its key is
    wrapped by now, or when it has no key yet; an account asked to move onto a bad key keeps its
    current wrap and stays usable.
    """
    if not definitive:
        # A flaky vault proves nothing either way: a locked account stays locked until a check succeeds.
        if locked:
            state = AccountState.KEY_INACCESSIBLE
        else:
            state = AccountState.PROVISIONING if current is None else AccountState.ACTIVE
        return Outcome(
            state,
            [
                Condition(conditions.READY, "False", reason, sentence(message)),
                Condition(conditions.VAULT_DEGRADED, "True", reason, f"{sentence(message)} Retrying."),
            ],
        )
    message = sentence(message)
    keeps = f" The account key stays wrapped by {describe(current)}." if current is not None else ""
    updates = [Condition(conditions.READY, "False", reason, message + keeps)]
    if inaccessible and current is None:
        state = AccountState.KEY_INACCESSIBLE
        updates.append(Condition(conditions.KEY_INACCESSIBLE, "True", reason, message))
    elif current is None:
        state = AccountState.ERROR
    else:
        # A move onto a key that cannot be used changes nothing: a locked account stays locked.
        state = AccountState.KEY_INACCESSIBLE if locked else AccountState.ACTIVE
    return Outcome(state, updates)


def outcome_move_waits(
    *,
    reason: str,
    message: str,
    definitive: bool,
    current: envelope.InnerKeyRef,
    target: envelope.InnerKeyRef,
    locked: bool,
) -> Outcome:
    """A move to another key (or identity) whose source, the key that wraps the account key now,
    cannot open it: nothing changes but Ready, which says why; the move is tried again."""
    text = (
        f"The account key cannot move from {describe(current)} to {describe(target)} yet: "
        f"{describe(current)} does not open it now: {sentence(message)} It stays wrapped as it is, and the "
        "move is tried again every check interval."
    )
    updates = [Condition(conditions.READY, "False", reason, text)]
    if not definitive:
        updates.append(Condition(conditions.VAULT_DEGRADED, "True", reason, f"{sentence(message)} Retrying."))
    return Outcome(AccountState.KEY_INACCESSIBLE if locked else AccountState.ACTIVE, updates)


def outcome_current_key_inaccessible(*, reason: str, message: str, current: envelope.InnerKeyRef) -> Outcome:
    """The key that wraps the account key now is unusable: lock the account."""
    where = describe(current)
    text = sentence(f"{where[0].upper()}{where[1:]} cannot be used: {message}")
    if reason in (Reason.KEY_DISABLED, Reason.KEY_VERSION_NOT_FOUND) and current.key_version:
        # Typically a backup from before a rotation: it needs the version it was wrapped by.
        text += (
            f" The account key is wrapped by version {current.key_version}: enable (or restore) that version "
            "so it opens; it is then re-wrapped to the version the CustomerKey names."
        )
    return Outcome(
        AccountState.KEY_INACCESSIBLE,
        [
            Condition(conditions.READY, "False", reason, text),
            Condition(conditions.KEY_INACCESSIBLE, "True", reason, text),
        ],
    )


def _replace_hint(namespace: str, name: str, account_id: str) -> str:
    return (
        "To give that key and the data sealed under it up for good and make a new key, run: kubectl annotate "
        f"videoanalyzeraccount {name} -n {namespace} {labels.ANNOTATION_REPLACE_ACCOUNT_KEY}={account_id}"
    )


def outcome_lost(secret_name: str, *, namespace: str, name: str, account_id: str) -> Outcome:
    message = (
        f"Secret {secret_name} with the wrapped account key is gone. No new key is made, because data "
        "encrypted under the old one would be lost; restore the Secret from backup "
        f"(docs/operations.md#backup-and-restore). {_replace_hint(namespace, name, account_id)}."
    )
    return _account_key_outcome(AccountState.ERROR, Reason.ACCOUNT_KEY_LOST, message)


def outcome_awaiting_restore(secret_name: str, *, namespace: str, name: str, account_id: str) -> Outcome:
    """The account is account ``account_id`` (so it had a key) and its Secret is not here yet."""
    message = (
        f"This account is account ID {account_id} (annotation {labels.ANNOTATION_ACCOUNT_ID}), so it has an "
        f"account key, and its Secret {secret_name} is not here: a restore is bringing it back, or it was "
        f"lost. Restore {secret_name} from the backup this account came from (Velero restores Secrets "
        "before custom resources); the account then opens its own key and its data reads again. No new "
        f"key is made meanwhile. {_replace_hint(namespace, name, account_id)}."
    )
    return _account_key_outcome(AccountState.PROVISIONING, Reason.ACCOUNT_KEY_NOT_RESTORED, message)


def outcome_error(reason: str, message: str) -> Outcome:
    return _account_key_outcome(AccountState.ERROR, reason, message)


def _account_key_outcome(state: AccountState, reason: str, message: str) -> Outcome:
    """Something about the account key itself (not the key that wraps it): Ready and
    AccountKeyReady both say it."""
    return Outcome(
        state,
        [
            Condition(conditions.READY, "False", reason, message),
            Condition(conditions.ACCOUNT_KEY_READY, "False", reason, message),
        ],
    )
