"""Condition types, reason codes and the one function that merges a condition into a status.

Reason codes are part of the public API (docs/reference/conditions.md lists them): alerts,
runbooks and GitOps health checks match on them, so they never change meaning. Conditions follow
the Kubernetes API conventions: type, status, reason, message, lastTransitionTime,
observedGeneration; lastTransitionTime only moves when status changes.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["True", "False", "Unknown"]

# ---- types --------------------------------------------------------------------------------------
READY = "Ready"  # summary, read by GitOps tools
KEY_INACCESSIBLE = "KeyInaccessible"  # the customer key cannot be used; the account is locked
ACCOUNT_KEY_READY = "AccountKeyReady"  # the wrapped account key exists and opens
VAULT_DEGRADED = "VaultDegraded"  # transient vault failures within the grace period
KEY_EXPIRING = "KeyExpiring"  # the key version that wraps the account key expires soon (or did)
# kstatus' "abnormal-true" conditions (Flux, kpt, cli-utils; the Argo CD health check reads them too):
RECONCILING = "Reconciling"  # work under way (provisioning, retrying a flaky vault)
STALLED = "Stalled"  # no progress without a person: the reason says what to fix
PROGRESS = (RECONCILING, STALLED)


class Reason:
    """Stable reason codes. The value is what appears in ``reason``."""

    # Progress and success
    PROVISIONING = "Provisioning"
    WRAPPED = "Wrapped"
    KEY_ACCESSIBLE = "KeyAccessible"
    READY = "Ready"
    VALID = "Valid"
    # The account key itself
    ACCOUNT_KEY_LOST = "AccountKeyLost"
    PLATFORM_KEY_MISSING = "PlatformKeyMissing"
    UNWRAP_FAILED = "UnwrapFailed"
    ACCOUNT_KEY_NAME_TAKEN = "SecretNameTaken"  # <account>-account-key exists and is not the operator's
    # Restores: the account has an account ID and its Secret is not back yet (waits, never mints)
    ACCOUNT_KEY_NOT_RESTORED = "AccountKeyNotRestored"
    # A Secret of this account's name holds a key the account does not claim (no account ID on it)
    ACCOUNT_KEY_NOT_ADOPTED = "AccountKeyNotAdopted"
    # The Secret holds another account's key (another account ID, namespace or name)
    ACCOUNT_KEY_OF_ANOTHER_ACCOUNT = "AccountKeyOfAnotherAccount"
    # References inside the namespace
    KEY_REF_NOT_FOUND = "CustomerKeyNotFound"
    # What only the vault can tell
    KEY_NOT_FOUND = "KeyNotFound"
    KEY_VERSION_NOT_FOUND = "KeyVersionNotFound"
    VAULT_NOT_FOUND = "VaultNotFound"
    ACCESS_DENIED = "AccessDenied"
    KEY_DISABLED = "KeyDisabled"
    # The version that would wrap has expired: it opens what it wrapped, and wraps nothing new
    KEY_EXPIRED = "KeyExpired"
    # KeyExpiring: the wrapping version expires within the warning time, or does not
    KEY_VERSION_EXPIRING = "KeyVersionExpiring"
    KEY_VERSION_VALID = "KeyVersionValid"
    KEY_UNSUPPORTED = "KeyUnsupported"
    REGION_MISMATCH = "RegionMismatch"
    SOFT_DELETE_DISABLED = "SoftDeleteDisabled"
    PURGE_PROTECTION_DISABLED = "PurgeProtectionDisabled"
    VAULT_UNREACHABLE = "VaultUnreachable"
    PROVIDER_UNAVAILABLE = "ProviderUnavailable"
    # A KeyVault names an address the platform does not allow vaults at (vaultAddresses)
    VAULT_ADDRESS_REFUSED = "VaultAddressRefused"
    IDENTITY_NOT_FOUND = "IdentityNotFound"
    # A write the operator needs was refused by the apiserver (quota, policy, another webhook)
    WRITE_REFUSED = "WriteRefused"
    # A CustomerKey no account uses and that names no identity to check it as
    NOT_CHECKED = "NotChecked"


@dataclass(frozen=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str


def now_rfc3339() -> str:
    return rfc3339(datetime.datetime.now(datetime.UTC))


def rfc3339(moment: datetime.datetime) -> str:
    """A UTC time as the Kubernetes API writes times: 2026-12-02T08:37:35Z."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime.datetime:
    """An RFC 3339 time, "Z" or an offset (one without is taken as UTC); ValueError if it is none."""
    found = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return found if found.tzinfo else found.replace(tzinfo=datetime.UTC)


def merge(
    existing: Sequence[Mapping[str, Any]] | None,
    updates: Iterable[Condition],
    *,
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """Return ``existing`` with ``updates`` applied, keeping lastTransitionTime where status is unchanged."""
    by_type: dict[str, dict[str, Any]] = {c["type"]: dict(c) for c in existing or () if "type" in c}
    stamp = now or now_rfc3339()
    for update in updates:
        previous = by_type.get(update.type)
        changed = previous is None or previous.get("status") != update.status
        entry: dict[str, Any] = {
            "type": update.type,
            "status": update.status,
            "reason": update.reason,
            "message": update.message,
            "lastTransitionTime": stamp if changed else previous.get("lastTransitionTime", stamp),  # type: ignore[union-attr]
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        by_type[update.type] = entry
    return sorted(by_type.values(), key=lambda c: (c["type"] != READY, c["type"]))


def progress(ready: Condition, *, in_progress: bool) -> list[Condition]:
    """Reconciling or Stalled beside a Ready condition, as kstatus reads them: neither when Ready is
    True; Reconciling while the operator is still working on it; Stalled when Ready is False and
    only a person can change that; neither when Ready is Unknown and nothing is under way."""
    if ready.status == "True":
        return []
    if in_progress:
        return [Condition(RECONCILING, "True", ready.reason, ready.message)]
    if ready.status == "False":
        return [Condition(STALLED, "True", ready.reason, ready.message)]
    return []


def merge_with_progress(
    existing: Sequence[Mapping[str, Any]] | None,
    updates: Sequence[Condition],
    *,
    in_progress: bool,
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """``merge`` of ``updates`` (which include Ready), then Reconciling and Stalled set from it, or
    removed: kstatus treats a present Reconciling or Stalled as True-ish, so stale ones must go."""
    ready = next(u for u in updates if u.type == READY)
    extra = progress(ready, in_progress=in_progress)
    merged = merge(existing, [*updates, *extra], generation=generation, now=now)
    wanted = {c.type for c in extra}
    return [c for c in merged if c["type"] not in PROGRESS or c["type"] in wanted]


def find(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for condition in conditions or ():
        if condition.get("type") == type_:
            return condition
    return None


def transitions_to_tell(
    before: Sequence[Mapping[str, Any]] | None, after: Sequence[Mapping[str, Any]]
) -> list[tuple[Mapping[str, Any], bool]]:
    """The changes of KeyInaccessible, Ready and KeyExpiring (status or reason) that Kubernetes Events
    tell, each with whether it is a warning.

    A lock or a recovery changes both to say one thing; KeyInaccessible, with the specific reason
    (AccessDenied, KeyAccessible), tells it alone: two Events per account would make locking 10,000
    accounts three writes each instead of two. Ready is told as well when it says something else
    (a problem that is not the key). A condition that is new and fine (a new account) is not told:
    AccountKeyCreated tells that."""
    told: dict[str, tuple[Mapping[str, Any], bool]] = {}
    for type_, bad in ((KEY_INACCESSIBLE, "True"), (READY, "False"), (KEY_EXPIRING, "True")):
        condition = next((c for c in after if c["type"] == type_), None)
        old = find(before, type_)
        if condition is None or (old is not None and _news(old) == _news(condition)):
            continue
        warning = condition["status"] == bad
        if warning or old is not None:
            told[type_] = (condition, warning)
    if KEY_INACCESSIBLE in told and READY in told:
        key, ready = told[KEY_INACCESSIBLE][0], told[READY][0]
        locked = key["status"] == "True" and ready["status"] == "False" and ready["reason"] == key["reason"]
        if locked or (key["status"] == "False" and ready["status"] == "True"):
            del told[READY]
    return list(told.values())


def _news(condition: Mapping[str, Any]) -> tuple[Any, Any]:
    return condition.get("status"), condition.get("reason")


def spec_changed(body: Mapping[str, Any]) -> bool:
    """The spec changed since the operator last reported on it (status-only updates are its own)."""
    status = body.get("status") or {}
    return bool(status.get("observedGeneration") != (body.get("metadata") or {}).get("generation"))
