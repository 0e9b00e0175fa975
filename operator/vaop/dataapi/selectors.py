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


_SET = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$")
_BINARY = re.compile(r"^([^=!<>\s]+)\s*(==|=|!=|>|<)\s*(\S*)$")
_EXISTS = re.compile(r"^(!?)\s*([^=!<>\s]+)$")
# As the apiserver validates them (k8s.io/apimachinery validation): a qualified name with an
# optional DNS-subdomain prefix, and values of at most 63 characters.
_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class _Requirement:
    key: str
    operator: str  # in, notin, exists, !exists, gt, lt
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "in":
            return present and labels[self.key] in self.values
        if self.operator == "notin":
            return not present or labels[self.key] not in self.values
        if self.operator in ("gt", "lt"):
            # As the apiserver: both sides integers, or no match.
            (bound,) = self.values
            try:
                value = int(labels[self.key]) if present else None
            except ValueError:
                return False
            return value is not None and (value > int(bound) if self.operator == "gt" else value < int(bound))
        return present == (self.operator == "exists")


def _key(text: str) -> str:
    prefix, _, name = text.rpartition("/")
    bad_prefix = bool(prefix) and (len(prefix) > 253 or not _PREFIX.match(prefix))
    if len(name) > 63 or not _NAME.match(name) or bad_prefix:
        raise SelectorError(
            f"invalid label key {text!r}: a name of at most 63 letters, digits, '-', '_' or '.' (starting "
            "and ending with a letter or digit), optionally after a DNS subdomain prefix and '/'"
        )
    return text


def _value(text: str) -> str:
    if len(text) > 63 or (text and not _NAME.match(text)):
        raise SelectorError(
            f"invalid label value {text!r}: at most 63 letters, digits, '-', '_' or '.', starting and "
            "ending with a letter or digit (or empty)"
        )
    return text


def _requirement(text: str) -> _Requirement:
    if match := _SET.match(text):
        values = [v.strip() for v in match.group(3).split(",")]  # "()": the empty value, as the apiserver
        return _Requirement(_key(match.group(1)), match.group(2), frozenset(_value(v) for v in values))
    if match := _BINARY.match(text):
        key, operator, value = match.groups()
        if operator in (">", "<"):
            if not re.fullmatch(r"-?[0-9]+", value):
                raise SelectorError(f"{text!r}: for '>' and '<', the value must be an integer")
            return _Requirement(_key(key), "gt" if operator == ">" else "lt", frozenset({value}))
        return _Requirement(_key(key), "notin" if operator == "!=" else "in", frozenset({_value(value)}))
    if match := _EXISTS.match(text):
        return _Requirement(_key(match.group(2)), "!exists" if match.group(1) else "exists")
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
