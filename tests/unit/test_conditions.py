from __future__ import annotations

from vaop import conditions
from vaop.conditions import Condition
from vaopdev import binaries


def test_transition_time_moves_only_when_status_changes() -> None:
    first = conditions.merge(None, [Condition("Ready", "False", "Provisioning", "m")], generation=1, now="t1")
    same = conditions.merge(
        first, [Condition("Ready", "False", "AccessDenied", "m2")], generation=2, now="t2"
    )
    assert same[0]["lastTransitionTime"] == "t1"
    assert (same[0]["reason"], same[0]["observedGeneration"]) == ("AccessDenied", 2)
    flipped = conditions.merge(same, [Condition("Ready", "True", "Ready", "ok")], generation=2, now="t3")
    assert flipped[0]["lastTransitionTime"] == "t3"


def test_ready_comes_first_and_other_types_are_kept() -> None:
    merged = conditions.merge(
        [{"type": "KeyInaccessible", "status": "False", "reason": "KeyAccessible", "message": ""}],
        [Condition("Ready", "True", "Ready", "")],
        generation=None,
    )
    assert [c["type"] for c in merged] == ["Ready", "KeyInaccessible"]


def _condition(type_: str, status: str, reason: str) -> dict[str, object]:
    return {"type": type_, "status": status, "reason": reason, "message": ""}


ACTIVE = [_condition("Ready", "True", "Ready"), _condition("KeyInaccessible", "False", "KeyAccessible")]
LOCKED = [_condition("Ready", "False", "AccessDenied"), _condition("KeyInaccessible", "True", "AccessDenied")]


def _told(before: list[dict[str, object]] | None, after: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(c["type"], c["reason"], warning) for c, warning in conditions.transitions_to_tell(before, after)]


def test_a_lock_and_a_recovery_are_told_once_by_key_inaccessible() -> None:
    assert _told(ACTIVE, LOCKED) == [("KeyInaccessible", "AccessDenied", True)]
    assert _told(LOCKED, ACTIVE) == [("KeyInaccessible", "KeyAccessible", False)]
    disabled = [
        _condition("Ready", "False", "KeyDisabled"),
        _condition("KeyInaccessible", "True", "KeyDisabled"),
    ]
    assert _told(LOCKED, disabled) == [("KeyInaccessible", "KeyDisabled", True)]
    assert _told(LOCKED, LOCKED) == []


def test_ready_is_told_when_it_says_something_else() -> None:
    lost = [_condition("Ready", "False", "AccountKeyLost"), ACTIVE[1]]
    assert _told(ACTIVE, lost) == [("Ready", "AccountKeyLost", True)]
    # Access is back but the Secret is gone: both are news.
    assert _told(LOCKED, lost) == [
        ("KeyInaccessible", "KeyAccessible", False),
        ("Ready", "AccountKeyLost", True),
    ]


def test_a_new_account_fine_from_the_start_is_not_told_a_failing_one_is() -> None:
    assert _told(None, ACTIVE) == []
    failing = [_condition("Ready", "False", "PlatformKeyMissing"), ACTIVE[1]]
    assert _told(None, failing) == [("Ready", "PlatformKeyMissing", True)]
    assert _told(None, LOCKED) == [("KeyInaccessible", "AccessDenied", True)]


def _types(merged: list[dict[str, object]]) -> dict[str, object]:
    return {str(c["type"]): c["status"] for c in merged}


def test_reconciling_and_stalled_follow_ready_and_vanish_when_it_is_true() -> None:
    working = conditions.merge_with_progress(
        None,
        [Condition("Ready", "False", "VaultUnreachable", "retrying")],
        in_progress=True,
        generation=1,
        now="t1",
    )
    assert _types(working) == {"Ready": "False", "Reconciling": "True"}
    stuck = conditions.merge_with_progress(
        working,
        [Condition("Ready", "False", "KeyDisabled", "enable it")],
        in_progress=False,
        generation=1,
        now="t2",
    )
    assert _types(stuck) == {"Ready": "False", "Stalled": "True"}
    stalled = next(c for c in stuck if c["type"] == "Stalled")
    assert (stalled["reason"], stalled["message"], stalled["observedGeneration"]) == (
        "KeyDisabled",
        "enable it",
        1,
    )
    still = conditions.merge_with_progress(
        stuck,
        [Condition("Ready", "False", "KeyDisabled", "enable it")],
        in_progress=False,
        generation=1,
        now="t3",
    )
    assert next(c for c in still if c["type"] == "Stalled")["lastTransitionTime"] == "t2"
    ready = conditions.merge_with_progress(
        still, [Condition("Ready", "True", "Ready", "ok")], in_progress=False, generation=2, now="t4"
    )
    assert _types(ready) == {"Ready": "True"}


def test_ready_unknown_with_nothing_under_way_is_neither() -> None:
    merged = conditions.merge_with_progress(
        None,
        [Condition("Ready", "Unknown", "NotChecked", "no account uses it")],
        in_progress=False,
        generation=1,
    )
    assert _types(merged) == {"Ready": "Unknown"}


def test_every_reason_is_in_the_reference() -> None:
    reference = (binaries.REPO_ROOT / "docs" / "reference" / "conditions.md").read_text()
    reasons = {v for k, v in vars(conditions.Reason).items() if k.isupper()}
    assert {r for r in reasons if f"| `{r}` |" not in reference} == set()
