"""The data API's PATCH bodies: RFC 6902's own examples (its appendix A) and RFC 7386's."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from vaop.dataapi import patches

# (document, patch, result) from RFC 6902 appendix A.
RFC6902 = [
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}], {"baz": "qux", "foo": "bar"}),
    (
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
    ),
    ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]}),
    (
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
    ),
    (
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
    ),
    (
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
    ),
    (
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [
            {"op": "test", "path": "/baz", "value": "qux"},
            {"op": "test", "path": "/foo/1", "value": 2},
        ],
        {"baz": "qux", "foo": ["a", 2, "c"]},
    ),
    (
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
    ),
    (
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
        {"foo": "bar", "baz": "qux"},
    ),
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    (
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
    ),
    ({"foo": 1}, [{"op": "copy", "from": "/foo", "path": "/bar"}], {"foo": 1, "bar": 1}),
]

# (document, patch) that RFC 6902 says must fail, and what the client is told.
RFC6902_ERRORS = [
    ({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], "a test operation failed"),
    ({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}], "cannot be applied"),
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}], "a test operation failed"),
    ({"foo": "bar"}, [{"op": "remove", "path": "/missing"}], "cannot be applied"),
    ({"foo": [1]}, [{"op": "add", "path": "/foo/5", "value": 2}], "cannot be applied"),
    ({"foo": 1}, [{"op": "frobnicate", "path": "/foo"}], "cannot be applied"),
    ({"foo": 1}, [{"op": "add", "path": "/bar"}], "cannot be applied"),
    ({"foo": 1}, {"op": "add", "path": "/bar", "value": 1}, "a list of operations"),
]


@pytest.mark.parametrize(("document", "patch", "result"), RFC6902)
def test_json_patch_gives_what_rfc_6902_gives(document: Any, patch: Any, result: Any) -> None:
    before = copy.deepcopy(document)
    assert patches.json_patch(document, patch) == result
    assert document == before  # the stored object is not changed behind the caller's back


@pytest.mark.parametrize(("document", "patch", "message"), RFC6902_ERRORS)
def test_json_patch_refuses_what_rfc_6902_refuses(document: Any, patch: Any, message: str) -> None:
    with pytest.raises(patches.PatchError, match=message) as refused:
        patches.json_patch(document, patch)
    assert "qux" not in str(refused.value)  # the document's values are not echoed back


def test_a_failed_patch_changes_nothing_even_after_earlier_operations_applied() -> None:
    document = {"spec": {"a": 1}}
    with pytest.raises(patches.PatchError):
        patches.json_patch(
            document, [{"op": "add", "path": "/spec/b", "value": 2}, {"op": "remove", "path": "/x"}]
        )
    assert document == {"spec": {"a": 1}}


# RFC 7386 appendix A.
RFC7386 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("document", "patch", "result"), RFC7386)
def test_merge_patch_gives_what_rfc_7386_gives(document: Any, patch: Any, result: Any) -> None:
    assert patches.merge_patch(document, patch) == result
