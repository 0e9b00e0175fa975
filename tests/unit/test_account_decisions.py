"""The account decisions as a table, the way cert-manager tests its policy chain."""

from __future__ import annotations

import dataclasses

import pytest

from vaop import conditions
from vaop.crypto import envelope
from vaop.domain import accounts as domain
from vaop.models import AccountState

SYSTEM = envelope.InnerKeyRef("SystemKey", "kubernetes", "", "system-key", "1", "RSA-OAEP-256")
CUSTOMER = envelope.InnerKeyRef("CustomerKey", "kubernetes", "vault", "kek", "2", "RSA-OAEP-256")


@pytest.mark.parametrize(
    ("secret_present", "key_existed", "has_id", "replace", "current", "target_same", "expected"),
    [
        (False, False, False, False, None, False, domain.Action.CREATE),  # a new account
        (False, True, False, False, None, False, domain.Action.LOST),  # never mint a second key
        (False, True, True, False, None, False, domain.Action.LOST),
        # An account with an ID had a key: its Secret is on its way back (a restore), or lost.
        (False, False, True, False, None, False, domain.Action.AWAIT_RESTORE),
        # ... until a person gives that key up by its ID.
        (False, False, True, True, None, False, domain.Action.CREATE),
        (False, True, True, True, None, False, domain.Action.CREATE),
        (True, True, True, False, SYSTEM, True, domain.Action.KEEP),
        (True, True, True, False, SYSTEM, False, domain.Action.REWRAP),
        (True, False, True, False, CUSTOMER, True, domain.Action.KEEP),  # restored: status lost, Secret kept
        (True, False, False, False, CUSTOMER, False, domain.Action.REWRAP),
        (True, True, True, True, SYSTEM, True, domain.Action.KEEP),  # a Secret is never replaced
    ],
)
def test_decide(  # noqa: PLR0917 (a table's columns)
    secret_present: bool,
    key_existed: bool,
    has_id: bool,
    replace: bool,
    current: envelope.InnerKeyRef | None,
    target_same: bool,
    expected: domain.Action,
) -> None:
    action = domain.decide(
        secret_present=secret_present,
        key_existed=key_existed,
        has_account_id=has_id,
        replace_requested=replace,
        current=current,
        target_same=target_same,
    )
    assert action is expected


HELD = envelope.AccountIdentity("tenant-a", "studio", "id-1")


@pytest.mark.parametrize(
    ("account_id", "owners", "held", "expected"),
    [
        ("id-1", (), HELD, None),  # restored together: the annotation names the envelope's ID
        ("id-1", ("uid-old",), HELD, None),
        ("", ("uid-1",), HELD, None),  # made for this very object, not annotated yet (or format 1)
        ("", (), HELD, conditions.Reason.ACCOUNT_KEY_NOT_ADOPTED),  # restored without the annotation
        ("", ("uid-old",), HELD, conditions.Reason.ACCOUNT_KEY_NOT_ADOPTED),  # made anew, old Secret left
        ("id-2", ("uid-1",), HELD, conditions.Reason.ACCOUNT_KEY_OF_ANOTHER_ACCOUNT),
        (
            "id-1",
            (),
            envelope.AccountIdentity("tenant-b", "studio", "id-1"),
            conditions.Reason.ACCOUNT_KEY_OF_ANOTHER_ACCOUNT,
        ),
        (
            "id-1",
            (),
            envelope.AccountIdentity("tenant-a", "lobby", "id-1"),
            conditions.Reason.ACCOUNT_KEY_OF_ANOTHER_ACCOUNT,
        ),
    ],
)
def test_whose_key_the_secret_holds(
    account_id: str, owners: tuple[str, ...], held: envelope.AccountIdentity, expected: str | None
) -> None:
    refused = domain.not_held(
        namespace="tenant-a",
        name="studio",
        account_id=account_id,
        account_uid="uid-1",
        held=held,
        secret_owners=owners,
        secret_name="studio-account-key",
    )
    if expected is None:
        assert refused is None
        return
    assert refused is not None
    ready = _by_type(refused)["Ready"]
    assert (ready.status, ready.reason) == ("False", expected)
    assert held.id in ready.message  # it names the key's account ID, so a person can act on it
    if expected == conditions.Reason.ACCOUNT_KEY_NOT_ADOPTED:
        assert (
            "kubectl annotate videoanalyzeraccount studio -n tenant-a videoanalyzer.io/account-id=id-1"
            in (ready.message)
        )
        assert not domain.in_progress(refused)  # Stalled: waits for a person


def test_awaiting_a_restore_says_what_to_do_and_how_to_give_up_the_key() -> None:
    outcome = domain.outcome_awaiting_restore(
        "studio-account-key", namespace="t", name="studio", account_id="id-9"
    )
    ready = _by_type(outcome)["Ready"]
    assert (outcome.state, ready.reason) == (AccountState.PROVISIONING, "AccountKeyNotRestored")
    assert "Restore studio-account-key" in ready.message
    assert "videoanalyzer.io/replace-account-key=id-9" in ready.message
    assert domain.in_progress(outcome)  # Reconciling: a restore brings the Secret back by itself


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
    outcome = domain.outcome_lost("studio-account-key", namespace="t", name="studio", account_id="id-3")
    assert outcome.state is AccountState.ERROR
    assert outcome.account_key is None  # the record of the old key is kept
    assert "restore the Secret" in _by_type(outcome)["Ready"].message
    assert "videoanalyzer.io/replace-account-key=id-3" in _by_type(outcome)["Ready"].message


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
    assert not domain.in_progress(domain.outcome_lost("s", namespace="t", name="a", account_id="i"))


def test_a_move_whose_source_cannot_open_keeps_the_state_and_says_both_keys() -> None:
    target = envelope.InnerKeyRef("SystemKey", "kubernetes", "", "system-key", "1", "")
    moving = dataclasses.replace(CUSTOMER, identity="studio-identity")
    for locked, state in ((False, AccountState.ACTIVE), (True, AccountState.KEY_INACCESSIBLE)):
        outcome = domain.outcome_move_waits(
            reason="AccessDenied",
            message="denied",
            definitive=True,
            current=moving,
            target=target,
            locked=locked,
        )
        ready = _by_type(outcome)["Ready"]
        assert (outcome.state, ready.status, ready.reason) == (state, "False", "AccessDenied")
        assert "from key kek version 2 in KeyVault vault (as ServiceAccount studio-identity)" in ready.message
        assert "to the system key (version 1)" in ready.message
        assert "KeyInaccessible" not in _by_type(outcome)


def test_a_current_version_disabled_names_the_version_to_enable() -> None:
    outcome = domain.outcome_current_key_inaccessible(
        reason="KeyDisabled", message="disabled", current=CUSTOMER
    )
    assert "wrapped by version 2: enable (or restore) that version" in _by_type(outcome)["Ready"].message
