"""Managed fields and server-side apply for the data kinds, as the apiserver's structured merge does
them for schemas like these: maps are merged key by key, every list is atomic (owned and replaced
whole), so a field is a path to a scalar or a list.

- An update (PUT, or a merge/JSON/strategic patch) gives its manager (operation Update) the fields
  whose values it changed, taking them from whoever owned them.
- An apply (operation Apply) sets the fields of the applied configuration. A field another manager
  owns with a different value is a conflict (409, naming the field and the manager) unless the
  apply forces; fields the same manager applied before and no longer applies are removed, unless
  another manager owns them too.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from . import documents, kinds

Path = tuple[str, ...]
TRACKED_METADATA = ("labels", "annotations")
_MISSING = object()


class ApplyConflict(Exception):
    def __init__(self, conflicts: list[tuple[Path, str]]) -> None:
        self.conflicts = conflicts
        super().__init__(
            "Apply failed with {} conflict{}: {}".format(
                len(conflicts),
                "" if len(conflicts) == 1 else "s",
                "; ".join(
                    f'conflict with "{manager}" using {kinds.API_VERSION}: .{".".join(path)}'
                    for path, manager in conflicts
                ),
            )
        )


def paths(obj: dict[str, Any]) -> set[Path]:
    """The fields an object sets: labels, annotations and every leaf of spec."""
    found: set[Path] = set()
    meta = obj.get("metadata") or {}
    for field in TRACKED_METADATA:
        for key in meta.get(field) or {}:
            found.add(("metadata", field, key))
    _leaves(obj.get("spec"), ("spec",), found)
    return found


def _leaves(node: Any, prefix: Path, found: set[Path]) -> None:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            _leaves(value, (*prefix, key), found)
    elif node is not None and prefix != ("spec",):
        found.add(prefix)


def get(obj: Any, path: Path) -> Any:
    node = obj
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _set(obj: dict[str, Any], path: Path, value: Any) -> None:
    node = obj
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = documents.copied(value)


def _delete(obj: dict[str, Any], path: Path) -> None:
    nodes = [obj]  # nodes[d] is the map at path[:d]
    for part in path[:-1]:
        child = nodes[-1].get(part)
        if not isinstance(child, dict):
            return
        nodes.append(child)
    nodes[-1].pop(path[-1], None)
    for depth in range(len(nodes) - 1, 1, -1):  # drop maps the removal emptied; spec itself stays
        if nodes[depth]:
            break
        nodes[depth - 1].pop(path[depth - 1], None)


def to_fields_v1(owned: Iterable[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(owned):
        node = tree
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return tree


def from_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    owned: set[Path] = set()
    for key, child in tree.items():
        if not key.startswith("f:"):
            continue
        path = (*prefix, key[2:])
        if child:
            owned |= from_fields_v1(child, path)
        else:
            owned.add(path)
    return owned


def _entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(e) for e in (obj.get("metadata") or {}).get("managedFields") or []]


def _owners(entries: list[dict[str, Any]]) -> list[tuple[dict[str, Any], set[Path]]]:
    return [(e, from_fields_v1(e.get("fieldsV1") or {})) for e in entries]


def _entry(manager: str, operation: str, owned: set[Path]) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": kinds.API_VERSION,
        "time": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(owned),
    }


def _write(obj: dict[str, Any], owners: list[tuple[dict[str, Any], set[Path]]]) -> None:
    entries = []
    for entry, owned in owners:
        if owned:
            entries.append({**entry, "fieldsV1": to_fields_v1(owned)})
    obj.setdefault("metadata", {})["managedFields"] = entries


def record_update(old: dict[str, Any] | None, new: dict[str, Any], manager: str) -> dict[str, Any]:
    """``new`` with managed fields after an update by ``manager`` (old None: a create)."""
    before = old or {}
    changed = {p for p in paths(new) | paths(before) if get(new, p) != get(before, p)}
    owners = [(e, owned - changed) for e, owned in _owners(_entries(before))]
    gained = {p for p in changed if get(new, p) is not _MISSING}
    existing = [
        i for i, (e, _) in enumerate(owners) if e["manager"] == manager and e["operation"] == "Update"
    ]
    if existing:
        owned = owners[existing[0]][1]
        owners[existing[0]] = (_entry(manager, "Update", set()), owned | gained)
    else:
        owners.append((_entry(manager, "Update", set()), gained))
    result = documents.copied(new)
    _write(result, [(e, o & paths(result)) for e, o in owners])
    return result


def apply(
    live: dict[str, Any] | None, config: dict[str, Any], manager: str, *, force: bool
) -> dict[str, Any]:
    """The object after ``manager`` applies ``config`` to ``live`` (None: it does not exist yet)."""
    base = documents.copied(live) if live is not None else {"metadata": {}, "spec": {}}
    applied = paths(config)
    owners = _owners(_entries(base))
    conflicts = [
        (path, entry["manager"])
        for entry, owned in owners
        if entry["manager"] != manager
        for path in sorted(applied & owned)
        if get(config, path) != get(base, path)
    ]
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    previous = next((o for e, o in owners if e["manager"] == manager and e["operation"] == "Apply"), set())
    others = set().union(
        *(o for e, o in owners if not (e["manager"] == manager and e["operation"] == "Apply"))
    )
    result = base
    for key in ("apiVersion", "kind"):  # identity, not owned fields
        if key in config:
            result[key] = config[key]
    for key in ("name", "namespace"):
        if key in (config.get("metadata") or {}):
            result.setdefault("metadata", {})[key] = config["metadata"][key]
    for path in applied:
        _set(result, path, get(config, path))
    for path in previous - applied - others:
        _delete(result, path)
    forced = {path for path, _ in conflicts}
    owners = [
        (e, owned - forced)
        for e, owned in owners
        if not (e["manager"] == manager and e["operation"] == "Apply")
    ]
    owners.append((_entry(manager, "Apply", applied), applied))
    _write(result, [(e, o & paths(result)) for e, o in owners])
    return result
