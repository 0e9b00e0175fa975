"""PATCH bodies, as the apiserver applies them: JSON merge patch (RFC 7386), JSON patch (RFC 6902),
and strategic merge patch, which for these kinds is a merge patch (their lists have no merge keys:
every list is replaced whole, as a strategic merge would)."""

from __future__ import annotations

import copy
from typing import Any

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
APPLY_CBOR = "application/apply-patch+cbor"


class PatchError(Exception):
    """The patch cannot be applied; the message says where and why (a 422 to the client)."""


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(document: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchError("a JSON patch is a list of operations")
    result = copy.deepcopy(document)
    for index, operation in enumerate(operations):
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError(f"operation {index} needs 'op' and 'path'")
        result = _apply_operation(result, operation, index)
    return result


def _pointer(path: str, index: int) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"operation {index}: path {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(document: Any, parts: list[str], index: int) -> Any:
    node = document
    for part in parts[:-1]:
        node = _child(node, part, index)
    return node


def _child(node: Any, part: str, index: int) -> Any:
    if isinstance(node, dict) and part in node:
        return node[part]
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        return node[int(part)]
    raise PatchError(f"operation {index}: {part!r} does not exist")


def _get(document: Any, path: str, index: int) -> Any:
    node = document
    for part in _pointer(path, index):
        node = _child(node, part, index)
    return node


def _remove(document: Any, path: str, index: int) -> Any:
    parts = _pointer(path, index)
    if not parts:
        raise PatchError(f"operation {index}: cannot remove the whole object")
    parent = _parent(document, parts, index)
    value = _child(parent, parts[-1], index)
    if isinstance(parent, dict):
        del parent[parts[-1]]
    else:
        del parent[int(parts[-1])]
    return value


def _add(document: Any, path: str, value: Any, index: int, *, replace: bool = False) -> Any:
    parts = _pointer(path, index)
    if not parts:
        return copy.deepcopy(value)
    parent = _parent(document, parts, index)
    last = parts[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError(f"operation {index}: {path} does not exist")
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(copy.deepcopy(value))
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = copy.deepcopy(value)
            else:
                parent.insert(int(last), copy.deepcopy(value))
        else:
            raise PatchError(f"operation {index}: index {last!r} is out of range")
    else:
        raise PatchError(f"operation {index}: {path} has no parent object or list")
    return document


def _apply_operation(document: Any, operation: dict[str, Any], index: int) -> Any:
    op, path = operation["op"], operation["path"]
    if op in ("add", "replace", "test") and "value" not in operation:
        raise PatchError(f"operation {index} ({op}) needs 'value'")
    if op == "add":
        return _add(document, path, operation["value"], index)
    if op == "replace":
        return _add(document, path, operation["value"], index, replace=True)
    if op == "remove":
        _remove(document, path, index)
        return document
    if op in ("move", "copy"):
        if "from" not in operation:
            raise PatchError(f"operation {index} ({op}) needs 'from'")
        value = (
            _remove(document, operation["from"], index)
            if op == "move"
            else _get(document, operation["from"], index)
        )
        return _add(document, path, value, index)
    if op == "test":
        if _get(document, path, index) != operation["value"]:
            raise PatchError(f"operation {index}: test of {path} failed")
        return document
    raise PatchError(f"operation {index}: unknown op {op!r}")
