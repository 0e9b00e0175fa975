"""The data API's copy of JSON documents: what every write copies, so it must be a true deep copy."""

from __future__ import annotations

import datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from vaop.dataapi import documents

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


def _containers(node: Any) -> list[int]:
    """The ids of every dict and list in the document."""
    if isinstance(node, dict):
        return [id(node), *(i for value in node.values() for i in _containers(value))]
    if isinstance(node, list):
        return [id(node), *(i for value in node for i in _containers(value))]
    return []


@given(json_documents)
def test_a_copy_is_equal_and_shares_no_dict_or_list(document: Any) -> None:
    copy = documents.copied(document)
    assert copy == document
    assert not set(_containers(copy)) & set(_containers(document))


def test_changing_the_copy_leaves_the_original_and_other_values_are_deep_copied() -> None:
    when = datetime.datetime(2026, 12, 3, tzinfo=datetime.UTC)

    def made() -> dict[str, Any]:
        return {"spec": {"tags": ["a"], "at": when, "set": {1, 2}}, "metadata": {"labels": {"x": "1"}}}

    original = made()
    copy = documents.copied(original)
    copy["spec"]["tags"].append("b")
    copy["spec"]["set"].add(3)
    copy["metadata"]["labels"]["x"] = "2"
    assert original == made()
    assert copy["spec"]["at"] == when
