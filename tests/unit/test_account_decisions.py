"""The account decisions as a table, the way cert-manager tests its policy chain."""

from __future__ import annotations

import pytest

from vaop import conditions
from vaop.crypto import envelope
from vaop.domain import accounts as domain
from vaop.models import AccountState

SYSTEM = envelope.InnerKeyRef("SystemKey", "kubernetes", "", "system-key", "1", "RSA-OAEP-256")
CUSTOMER = envelope.InnerKeyRef("CustomerKey", "kubernetes", "vault", "kek", "2", "RSA-OAEP-256")


@pytest.mark.parametrize(
    ("secret_present", "key_existed", "current", "target_same", "expected"),
    [
        (False, False, None, False, domain.Action.CREATE),
        (False, True, None, False, domain.Action.LOST),  # never mint a second key
        (True, True, SYSTEM, True, domain.Action.KEEP),
        (True, True, SYSTEM, False, domain.Action.REWRAP),
        (True, False, CUSTOMER, True, domain.Action.KEEP),  # status lost, Secret kept: adopt it
        (True, False, CUSTOMER, False, domain.Action.REWRAP),
    ],
)
def test_decide(
    secret_present: bool,
    key_existed: bool,
    current: envelope.InnerKeyRef | None,
    target_same: bool,
    expected: domain.Action,
) -> None:
    action = domain.decide(
        secret_present=secret_present, key_existed=key_existed, current=current, target_same=target_same
    )
    assert action is expected


def _by_type(outcome: domain.Outcome) -> dict[str, conditions.Condition]:
    return {c.type: c for c in outcome.conditions}


def test_new_account_on_inaccessible_key_is_locked() -> None:
    outcome = domain.outcome_key_problem(
        reason="AccessDenied", message="no", definitive=True, inaccessible=True, current=None
    )
    assert outcome.state is AccountState.KEY_INACCESSIBLE
    assert _by_type(outcome)["KeyInaccessible"].status == "True"


def test_move_onto_bad_key_keeps_the_account_active_and_says_what_wraps_it() -> None:
    outcome = domain.outcome_key_problem(
        reason="KeyUnsupported", message="EC key.", definitive=True, inaccessible=False, current=SYSTEM
    )
    assert outcome.state is AccountState.ACTIVE
    assert "stays wrapped by the system key" in _by_type(outcome)["Ready"].message
    assert "KeyInaccessible" not in _by_type(outcome)


def test_transient_failure_degrades_without_locking() -> None:
    outcome = domain.outcome_key_problem(
        reason="VaultUnreachable", message="timeout.", definitive=False, inaccessible=False, current=CUSTOMER
    )
    assert outcome.state is AccountState.ACTIVE
    assert _by_type(outcome)["VaultDegraded"].status == "True"
    assert "KeyInaccessible" not in _by_type(outcome)


def test_current_key_gone_locks_with_the_reason() -> None:
    outcome = domain.outcome_current_key_inaccessible(
        reason="KeyDisabled", message="disabled", current=CUSTOMER
    )
    assert outcome.state is AccountState.KEY_INACCESSIBLE
    assert _by_type(outcome)["KeyInaccessible"].reason == "KeyDisabled"
    assert _by_type(outcome)["Ready"].message.startswith("Key kek version 2 in KeyVault vault cannot be used")


def test_lost_key_is_an_error_that_says_how_to_restore() -> None:
    outcome = domain.outcome_lost("studio-account-key")
    assert outcome.state is AccountState.ERROR
    assert outcome.account_key is None  # the record of the old key is kept
    assert "restore the Secret" in _by_type(outcome)["Ready"].message


def test_transient_failure_keeps_a_locked_account_locked() -> None:
    outcome = domain.outcome_key_problem(
        reason="VaultUnreachable",
        message="timeout",
        definitive=False,
        inaccessible=False,
        current=CUSTOMER,
        locked=True,
    )
    assert outcome.state is AccountState.KEY_INACCESSIBLE
    assert _by_type(outcome)["VaultDegraded"].status == "True"


def test_progress_of_an_account_as_kstatus_reads_it() -> None:
    """Reconciling while the operator works on it; otherwise not Ready means a person must act."""
    ref = CUSTOMER

    def transient(current: envelope.InnerKeyRef | None, *, locked: bool = False) -> domain.Outcome:
        return domain.outcome_key_problem(
            reason="VaultUnreachable",
            message="timeout",
            definitive=False,
            inaccessible=False,
            current=current,
            locked=locked,
        )

    assert domain.in_progress(transient(None))  # provisioning
    assert domain.in_progress(transient(ref))  # Active, retrying
    assert not domain.in_progress(transient(ref, locked=True))
    disabled = domain.outcome_key_problem(
        reason="KeyDisabled", message="disabled", definitive=True, inaccessible=True, current=None
    )
    assert not domain.in_progress(disabled)
    assert not domain.in_progress(
        domain.outcome_current_key_inaccessible(reason="AccessDenied", message="m", current=ref)
    )
    assert not domain.in_progress(domain.outcome_lost("s"))
