"""Why an account cannot go on, as the outcome it shows: a Secret that is not the operator's or holds
no valid envelope, an envelope whose outer layer does not open, and a key that fails, where which
key failed (the one wrapping the account key now, or one it moves to) decides whether the account
locks. Decisions only: the reconciler (``accounts.py``) reads and writes."""

from __future__ import annotations

from typing import Any

from .. import conditions, labels, models, platformroot, wrapping
from ..crypto import envelope
from ..domain import accounts as domain
from ..runtime import watchcache


class SecretInTheWay(Exception):
    """The create found a Secret of that name that the watch does not show: not the operator's."""

    def __init__(self, outcome: domain.Outcome) -> None:
        super().__init__(outcome.conditions[0].message)
        self.outcome = outcome


class SourceProblem(wrapping.KeyProblem):
    """The key that wraps the account key now cannot open it (as opposed to the key it should move to)."""


class TargetProblem(wrapping.KeyProblem):
    """The key the account key should be wrapped by refused to wrap it."""


def held_envelope(
    secret_name: str, secret: watchcache.Cached
) -> tuple[domain.Outcome | None, envelope.Envelope | None]:
    """The envelope in the account's Secret, or why the account cannot go on with that Secret. Either
    way no new key is made: a Secret the operator did not make is never overwritten (its type is
    immutable and its label guarded by the webhook, so neither is set by hand), and an envelope
    altered by hand or by a bad restore is to be restored, not replaced."""
    ours = secret.type == labels.ACCOUNT_KEY_SECRET_TYPE and (
        (secret.metadata.labels or {}).get(labels.COMPONENT) == labels.ACCOUNT_KEY_COMPONENT
    )
    if not ours:
        message = (
            f"Secret {secret_name} exists and was not made by the operator (type {secret.type}, "
            f"not {labels.ACCOUNT_KEY_SECRET_TYPE}). The operator never overwrites a Secret it did not "
            "make: rename or delete that Secret, and the account key is made"
        )
        return domain.outcome_error(conditions.Reason.ACCOUNT_KEY_NAME_TAKEN, message), None
    try:
        return None, domain.envelope_in(secret.data)
    except (envelope.EnvelopeError, ValueError) as error:
        message = (
            f"Secret {secret_name} does not hold a valid envelope ({error}). No new key is made; "
            "restore the Secret from backup (docs/operations.md#backup-and-restore)"
        )
        return domain.outcome_error(conditions.Reason.UNWRAP_FAILED, message), None


def unopenable(error: Exception) -> domain.Outcome:
    """An envelope whose outer layer does not open: another cluster's platform keys, or tampering."""
    if isinstance(error, envelope.OuterKeyMismatch | platformroot.PlatformKeyMissing):
        message = (
            f"{error}. Restore the platform keys of the cluster this account comes from into the operator's "
            "namespace (the Secrets labelled videoanalyzer.io/component=platform-key) and restart the "
            "operator: docs/operations.md#migrate-to-another-cluster"
        )
        return domain.outcome_error(conditions.Reason.PLATFORM_KEY_MISSING, message)
    return domain.outcome_error(conditions.Reason.UNWRAP_FAILED, str(error))


def on_key_problem(
    problem: wrapping.KeyProblem,
    *,
    context: wrapping.AccountContext,
    status: dict[str, Any],
    grace_expired: bool,
    current: envelope.Envelope | None,
    target: wrapping.WrappingKey | None,
) -> domain.Outcome:
    """The account's outcome when a key failed. ``grace_expired``: the vault has failed transiently
    for longer than the grace period, which counts as gone."""
    if problem.reason == conditions.Reason.PLATFORM_KEY_MISSING:
        return domain.outcome_error(problem.reason, problem.message)
    locked = status.get("state") == models.AccountState.KEY_INACCESSIBLE.value
    moving = current is not None and target is not None and not target.same_key_other_version(current.inner)
    if isinstance(problem, SourceProblem) and moving:
        # A move whose source cannot be opened: the account stays as it is, and says why.
        assert current is not None and target is not None
        return domain.outcome_move_waits(
            reason=problem.reason,
            message=problem.message,
            definitive=problem.definitive,
            current=current.inner,
            target=target.ref,
            locked=locked,
        )
    inaccessible = problem.reason in wrapping.INACCESSIBLE_REASONS
    if not problem.definitive and grace_expired:
        # A vault that has not answered for the whole grace period is treated as gone.
        message = f"{domain.sentence(problem.message)} The vault has failed for longer than the grace period."
        problem = wrapping.KeyProblem(problem.reason, message, definitive=True)
        inaccessible = True
    if current is not None and problem.definitive and inaccessible and _wraps_now(context, status, current):
        return domain.outcome_current_key_inaccessible(
            reason=problem.reason, message=problem.message, current=current.inner
        )
    return domain.outcome_key_problem(
        reason=problem.reason,
        message=problem.message,
        definitive=problem.definitive,
        inaccessible=inaccessible,
        current=current.inner if current else None,
        locked=locked,
    )


def _wraps_now(context: wrapping.AccountContext, status: dict[str, Any], current: envelope.Envelope) -> bool:
    """Is the key that failed the one that wraps the account key now, and the one its spec still
    names (not one it moves to, or away from)?"""
    if current.inner.type != models.EncryptionType.CUSTOMER_KEY.value:
        return False
    encryption = context.spec.encryption
    if encryption.type is not models.EncryptionType.CUSTOMER_KEY or encryption.key_ref is None:
        return False  # moving to the system key: the failing key is the one it leaves
    key = context.customer_key
    if key is None:
        # The CustomerKey the spec names is gone: the one in use, unless the spec names a new one.
        wrapped_by = (status.get("accountKey") or {}).get("wrappedBy") or {}
        return bool(wrapped_by.get("customerKey", encryption.key_ref.name) == encryption.key_ref.name)
    same_key = (current.inner.key_vault, current.inner.key_name) == (key.vault_ref.name, key.key_name)
    # The same key as another identity is a move too: the identity that failed is the new one.
    same_identity = current.inner.identity in ("", context.identity.name)
    return same_key and same_identity
