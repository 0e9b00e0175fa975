"""Pure decisions about a CustomerKey: what its status says after a check."""

from __future__ import annotations

import datetime
from typing import Any

from .. import conditions, models
from ..conditions import Condition, Reason
from ..providers import base
from .accounts import sentence

# Findings that are facts about the key or its vault, whoever looks. Others (access denied to one
# identity, a region that differs from one account's) belong on the account, not on the key.
KEY_REASONS = frozenset(
    {
        Reason.KEY_NOT_FOUND,
        Reason.KEY_VERSION_NOT_FOUND,
        Reason.KEY_DISABLED,
        Reason.KEY_EXPIRED,
        Reason.KEY_UNSUPPORTED,
        Reason.VAULT_NOT_FOUND,
        Reason.SOFT_DELETE_DISABLED,
        Reason.PURGE_PROTECTION_DISABLED,
        Reason.PROVIDER_UNAVAILABLE,
        Reason.VAULT_ADDRESS_REFUSED,
    }
)


# Ready reasons that come from checking the key itself (as some identity).
CHECKED = (
    KEY_REASONS - {Reason.VAULT_NOT_FOUND, Reason.PROVIDER_UNAVAILABLE, Reason.VAULT_ADDRESS_REFUSED}
) | {Reason.VALID}


def expiry_note(version: base.KeyVersion, *, warning: float) -> str | None:
    """What to say of the version's expiry when it is within ``warning`` seconds (or past), else None."""
    if version.expires_on is None:
        return None
    left = (version.expires_on - datetime.datetime.now(datetime.UTC)).total_seconds()
    if left <= 0:
        return (
            f"Version {version.version} of key {version.name!r} expired on {version.expiry()}: it still "
            "opens the account keys it wraps, but wraps no new one. Add a new version (accounts move to "
            "it at the next check), or extend this one."
        )
    if left <= warning:
        return (
            f"Version {version.version} of key {version.name!r} expires on {version.expiry()}; add a new "
            "version before then: accounts move to it at the next check."
        )
    return None


def customer_key_status(
    version: base.KeyVersion | None,
    problem: tuple[str, str, bool] | None,
    *,
    own_identity: bool,
    expiry_warning: float = 30 * 86400,
) -> dict[str, Any] | None:
    """Status fields, with the Ready condition under "ready", from one check; None if nothing to say.

    ``problem`` is (reason, message, definitive). Checked as an account's identity, only facts about
    the key itself are the key's to show; checked as the key's own ``spec.identity`` (no account
    uses it), whatever that identity meets is.
    """
    if problem is not None:
        reason, message, definitive = problem
        if reason in KEY_REASONS:
            return {"ready": Condition(conditions.READY, "False", reason, message)}
        if not own_identity:
            return None
        if not definitive:
            return {"ready": Condition(conditions.READY, "Unknown", reason, f"{message}; retrying")}
        return {"ready": Condition(conditions.READY, "False", reason, message)}
    assert version is not None
    note = expiry_note(version, warning=expiry_warning)
    message = (
        f"Version {version.version} is an enabled {version.facts.key_type} key of {version.facts.size} bits."
    )
    ready = Condition(conditions.READY, "True", Reason.VALID, f"{message} {note}" if note else message)
    if version.expired():
        assert note is not None
        ready = Condition(conditions.READY, "False", Reason.KEY_EXPIRED, note)  # no new account on it
    return {
        "currentVersion": version.version,
        "currentVersionExpiresOn": conditions.rfc3339(version.expires_on) if version.expires_on else None,
        "keyType": version.facts.key_type,
        "keySize": version.facts.size,
        "ready": ready,
    }


def unchecked_key_ready(
    spec: models.CustomerKeySpec, *, vault: models.KeyVaultSpec | None, refusal: base.Refusal | None
) -> Condition:
    """Ready of a CustomerKey no account uses and with no spec.identity to check it as: what can be
    told without acting as anyone (its KeyVault). Ready, so GitOps tools do not wait on a key kept for
    later, with a message saying the key itself is not checked yet and how to have it checked."""
    name = spec.vault_ref.name
    if vault is None:
        return Condition(
            conditions.READY,
            "False",
            Reason.VAULT_NOT_FOUND,
            f"KeyVault {name} does not exist in this namespace; create it or fix spec.vaultRef.",
        )
    if refusal is not None:
        return Condition(
            conditions.READY, "False", refusal.reason, sentence(f"KeyVault {name}: {refusal.message}")
        )
    return Condition(
        conditions.READY,
        "True",
        Reason.NOT_CHECKED,
        f"KeyVault {name} is configured. The key itself is not checked yet: no account uses it and "
        "spec.identity names no ServiceAccount to check it as. Set spec.identity.serviceAccountName to "
        "have it checked now; otherwise the first account that uses it checks it as its own identity.",
    )


def key_vault_status(
    spec: models.KeyVaultSpec, *, refusal: base.Refusal | None, generation: int | None, previous: Any
) -> dict[str, Any]:
    """What a KeyVault's status says from its spec and a probe without credentials (keys are checked
    only as the identities of the accounts that use them)."""
    provider = spec.provider.name
    status: dict[str, Any] = {"provider": provider, "observedGeneration": generation}
    if spec.provider.kubernetes is not None:
        # This provider cannot observe them: the owner declares them, and accounts check the declaration.
        status["softDelete"] = spec.provider.kubernetes.soft_delete
        status["purgeProtection"] = spec.provider.kubernetes.purge_protection
    retrying = refusal is not None and refusal.reason == Reason.VAULT_UNREACHABLE
    if refusal is not None:
        message = sentence(refusal.message[:1].upper() + refusal.message[1:])
        if retrying:
            message += " It is reached again every check interval; accounts on it keep their state meanwhile."
        ready = Condition(conditions.READY, "False", refusal.reason, message)
    else:
        found = (
            f"Configured for the {provider} provider."
            if spec.provider.kubernetes is not None
            else f"The {provider} vault answers (reached without credentials)."
        )
        ready = Condition(
            conditions.READY,
            "True",
            Reason.VALID,
            f"{found} Access and key properties are checked per key, as the identities of the accounts "
            "that use them.",
        )
    # A vault that does not answer yet is probed again each interval: in progress, not stalled.
    status["conditions"] = conditions.merge_with_progress(
        previous, [ready], in_progress=retrying, generation=generation
    )
    return status
