"""Pure decisions about a CustomerKey: what its status says after a check."""

from __future__ import annotations

from typing import Any

from .. import conditions, models
from ..conditions import Condition, Reason
from ..providers import base

# Findings that are facts about the key or its vault, whoever looks. Others (access denied to one
# identity, a region that differs from one account's) belong on the account, not on the key.
KEY_REASONS = frozenset(
    {
        Reason.KEY_NOT_FOUND,
        Reason.KEY_VERSION_NOT_FOUND,
        Reason.KEY_DISABLED,
        Reason.KEY_UNSUPPORTED,
        Reason.VAULT_NOT_FOUND,
        Reason.SOFT_DELETE_DISABLED,
        Reason.PURGE_PROTECTION_DISABLED,
        Reason.PROVIDER_UNAVAILABLE,
    }
)


def customer_key_status(
    version: base.KeyVersion | None, problem: tuple[str, str] | None
) -> dict[str, Any] | None:
    """Status fields, with the Ready condition under "ready", from one check; None if nothing to say."""
    if problem is not None:
        reason, message = problem
        if reason not in KEY_REASONS:
            return None
        return {"ready": Condition(conditions.READY, "False", reason, message)}
    assert version is not None
    return {
        "currentVersion": version.version,
        "keyType": version.facts.key_type,
        "keySize": version.facts.size,
        "ready": Condition(
            conditions.READY,
            "True",
            Reason.VALID,
            f"Version {version.version} is an enabled {version.facts.key_type} key "
            f"of {version.facts.size} bits.",
        ),
    }


def key_vault_status(
    spec: models.KeyVaultSpec, *, available: frozenset[str], generation: int | None, previous: Any
) -> dict[str, Any]:
    """What a KeyVault's status says from its spec alone (the vault is reached only as account identities)."""
    provider = spec.provider.name
    status: dict[str, Any] = {"provider": provider, "observedGeneration": generation}
    if spec.provider.kubernetes is not None:
        # This provider cannot observe them: the owner declares them, and accounts check the declaration.
        status["softDelete"] = spec.provider.kubernetes.soft_delete
        status["purgeProtection"] = spec.provider.kubernetes.purge_protection
    if provider not in available:
        ready = Condition(
            conditions.READY,
            "False",
            Reason.PROVIDER_UNAVAILABLE,
            f"The {provider} provider is not in this operator version; "
            f"available: {', '.join(sorted(available))}.",
        )
    else:
        ready = Condition(
            conditions.READY,
            "True",
            Reason.VALID,
            f"Configured for the {provider} provider. Access and key properties are checked per key, "
            "as the identities of the accounts that use them.",
        )
    status["conditions"] = conditions.merge(previous, [ready], generation=generation)
    return status
