"""Pure decisions about a CustomerKey: what its status says after a check."""

from __future__ import annotations

from typing import Any

from .. import conditions
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
