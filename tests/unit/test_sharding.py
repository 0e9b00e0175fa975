"""The namespace selector a release is given, as the apiserver's labelSelector parameter."""

from __future__ import annotations

import pytest

from vaop import config, sharding


def test_match_labels_and_expressions_become_one_label_selector() -> None:
    selector = {
        "matchLabels": {"videoanalyzer.io/shard": "b", "team": "video"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["gold", "silver"]},
            {"key": "frozen", "operator": "NotIn", "values": ["yes"]},
            {"key": "tenant", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    }
    assert sharding.selector_string(selector) == (
        "team=video,videoanalyzer.io/shard=b,tier in (gold,silver),frozen notin (yes),tenant,!legacy"
    )


def test_a_selector_that_cannot_work_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="'Gt' is not one of In, NotIn, Exists, DoesNotExist"):
        config.OperatorConfig(namespace_selector={"matchExpressions": [{"key": "x", "operator": "Gt"}]})
    with pytest.raises(ValueError, match="selects every namespace"):
        sharding.selector_string({"matchLabels": {}})


def test_sharding_needs_leader_election() -> None:
    with pytest.raises(ValueError, match="needs VAOP_LEADER_ELECTION=true"):
        config.OperatorConfig(namespace_selector={"matchLabels": {"a": "b"}}, leader_election=False)
