from __future__ import annotations

from vaop import conditions
from vaop.conditions import Condition


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


def test_transitions_lists_status_or_reason_changes() -> None:
    before = [{"type": "Ready", "status": "False", "reason": "A", "message": ""}]
    after = conditions.merge(before, [Condition("Ready", "False", "B", "")], generation=None)
    assert [c["reason"] for c in conditions.transitions(before, after)] == ["B"]
    assert conditions.transitions(after, after) == []
