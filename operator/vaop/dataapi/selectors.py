"""Label and field selectors, with the apiserver's syntax.

Labels live inside the seal, so label selectors are matched on opened objects; an object whose
content is withheld (its account locked) has no labels to match and only an empty selector selects
it. Field selectors support metadata.name, metadata.namespace and spec.accountName (routing fields,
known even while content is withheld).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

FIELDS = ("metadata.name", "metadata.namespace", "spec.accountName")
Matcher = Callable[[Mapping[str, str] | None], bool]


class SelectorError(ValueError):
    pass


def _split(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


_SET = re.compile(r"^([A-Za-z0-9./_-]+)\s+(in|notin)\s*\(([^)]*)\)$")
_EQUALITY = re.compile(r"^([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)$")
_EXISTS = re.compile(r"^(!?)([A-Za-z0-9./_-]+)$")


@dataclass(frozen=True)
class _Requirement:
    key: str
    operator: str  # in, notin, exists, !exists
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "in":
            return present and labels[self.key] in self.values
        if self.operator == "notin":
            return not present or labels[self.key] not in self.values
        return present == (self.operator == "exists")


def _requirement(text: str) -> _Requirement:
    if match := _SET.match(text):
        return _Requirement(
            match.group(1), match.group(2), frozenset(v.strip() for v in match.group(3).split(","))
        )
    if match := _EQUALITY.match(text):
        key, operator, value = match.groups()
        return _Requirement(key, "notin" if operator == "!=" else "in", frozenset({value}))
    if match := _EXISTS.match(text):
        return _Requirement(match.group(2), "!exists" if match.group(1) else "exists")
    raise SelectorError(f"unable to parse requirement: {text!r}")


def labels(selector: str | None) -> Matcher:
    """A predicate over an object's labels (None: unknown, i.e. withheld)."""
    requirements = [_requirement(text) for text in _split(selector or "")]

    def matches(object_labels: Mapping[str, str] | None) -> bool:
        if not requirements:
            return True
        if object_labels is None:
            return False
        return all(r.matches(object_labels) for r in requirements)

    return matches


def fields(selector: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over an object's routing fields; unknown field labels are refused, as the
    apiserver refuses them."""
    checks: list[tuple[str, str, bool]] = []
    for requirement in _split(selector or ""):
        match = re.match(r"^([A-Za-z.]+)\s*(==|=|!=)\s*(.*)$", requirement)
        if not match:
            raise SelectorError(f"invalid field selector: {requirement!r}")
        field, operator, value = match.groups()
        if field not in FIELDS:
            raise SelectorError(f'field label not supported: "{field}" (supported: {", ".join(FIELDS)})')
        checks.append((field, value, operator != "!="))

    def matches(known: Mapping[str, Any]) -> bool:
        return all((str(known.get(field, "")) == value) == equal for field, value, equal in checks)

    return matches
