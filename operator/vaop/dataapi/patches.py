"""PATCH bodies, as the apiserver applies them: JSON merge patch (RFC 7386), JSON patch (RFC 6902, by
the maintained ``jsonpatch`` library), and strategic merge patch, which for these kinds is a merge
patch (their lists have no merge keys: every list is replaced whole, as a strategic merge would)."""

from __future__ import annotations

from typing import Any

import jsonpatch
import jsonpointer

from . import documents

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


class PatchError(Exception):
    """The patch cannot be applied; the message says where and why (a 422 to the client)."""


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return documents.copied(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902, by the ``jsonpatch`` library; ``document`` is left as it was."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch is a list of operations")
    try:
        return jsonpatch.JsonPatch(operations).apply(document)
    except jsonpatch.JsonPatchTestFailed:  # its message quotes the document: the value stays out
        raise PatchError("a test operation failed: the value at its path differs") from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as error:
        raise PatchError(f"the JSON patch cannot be applied: {error}") from None
    except (TypeError, KeyError, IndexError, ValueError) as error:  # malformed operations
        raise PatchError(f"the JSON patch is malformed: {error}") from None
