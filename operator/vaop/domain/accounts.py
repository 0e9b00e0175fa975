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


def decide(
    *, secret_present: bool, key_existed: bool, current: envelope.InnerKeyRef | None, target_same: bool
) -> Action:
    """What to do, given what was observed. ``target_same``: the current envelope is wrapped by the target."""
    if not secret_present:
        return Action.LOST if key_existed else Action.CREATE
    if current is not None and not target_same:
        return Action.REWRAP
    return Action.KEEP


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
    return f"key {ref.key_name} version {ref.key_version} in KeyVault {ref.key_vault}"


def account_key_status(
    *, secret_name: str, key_check_value: str, sealed: envelope.Envelope, wrapped_at: str
) -> dict[str, Any]:
    inner = sealed.inner
    wrapped_by: dict[str, Any] = {
        "type": inner.type,
        "keyName": inner.key_name,
        "keyVersion": inner.key_version,
    }
    if inner.key_vault:
        wrapped_by["keyVault"] = inner.key_vault
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


def in_progress(outcome: Outcome) -> bool:
    """The operator is still working on it (kstatus' Reconciling): provisioning, or an account that is
    not locked retrying a flaky vault. Anything else that is not Ready needs a person (Stalled)."""
    if outcome.state is AccountState.PROVISIONING:
        return True
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
        state = AccountState.ACTIVE
    return Outcome(state, updates)


def outcome_current_key_inaccessible(*, reason: str, message: str, current: envelope.InnerKeyRef) -> Outcome:
    """The key that wraps the account key now is unusable: lock the account."""
    where = describe(current)
    text = sentence(f"{where[0].upper()}{where[1:]} cannot be used: {message}")
    return Outcome(
        AccountState.KEY_INACCESSIBLE,
        [
            Condition(conditions.READY, "False", reason, text),
            Condition(conditions.KEY_INACCESSIBLE, "True", reason, text),
        ],
    )


def outcome_lost(secret_name: str) -> Outcome:
    message = (
        f"Secret {secret_name} with the wrapped account key is gone. No new key is made, because data "
        "encrypted under the old one would be lost; restore the Secret from backup "
        "(docs/operations.md#restore-an-account-key)."
    )
    return Outcome(
        AccountState.ERROR,
        [
            Condition(conditions.READY, "False", Reason.ACCOUNT_KEY_LOST, message),
            Condition(conditions.ACCOUNT_KEY_READY, "False", Reason.ACCOUNT_KEY_LOST, message),
        ],
    )


def outcome_error(reason: str, message: str) -> Outcome:
    return Outcome(
        AccountState.ERROR,
        [
            Condition(conditions.READY, "False", reason, message),
            Condition(conditions.ACCOUNT_KEY_READY, "False", reason, message),
        ],
    )
