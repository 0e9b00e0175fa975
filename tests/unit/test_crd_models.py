"""crds/*.yaml is the one source of each schema: the chart's copy is made from it (`make crds`,
checked in test_chart.py), and the operator's typed models must read exactly what it lets through."""

from __future__ import annotations

import re
import types
import typing
from enum import Enum
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from vaop import models
from vaopdev import binaries

SPECS: dict[str, type[BaseModel]] = {
    "videoanalyzeraccounts.yaml": models.AccountSpec,
    "customerkeys.yaml": models.CustomerKeySpec,
    "keyvaults.yaml": models.KeyVaultSpec,
}


def _spec_schema(file: str) -> dict[str, Any]:
    crd = yaml.safe_load((binaries.REPO_ROOT / "crds" / file).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    return dict(version["schema"]["openAPIV3Schema"]["properties"]["spec"])


def _model_of(annotation: Any) -> Any:
    """The model or enum inside ``X | None``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return inner
    return annotation


def _refused(schema: dict[str, Any]) -> set[str]:
    """Properties declared only so that a CEL rule refuses them (``!has(self.__namespace__)``)."""
    rules = [v["rule"] for v in schema.get("x-kubernetes-validations", [])]
    return {m.group(1) for rule in rules for m in re.finditer(r"^!has\(self\.(?:__)?(\w+?)(?:__)?\)$", rule)}


def _disagreements(model: type[BaseModel], schema: dict[str, Any], path: str) -> list[str]:
    found = []
    properties = {k: v for k, v in schema.get("properties", {}).items() if k not in _refused(schema)}
    required = set(schema.get("required", []))
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    for name in sorted(set(properties) - set(fields)):
        found.append(f"{path}.{name} is in the CRD but not in {model.__name__}")
    for name in sorted(set(fields) - set(properties)):
        found.append(f"{path}.{name} is in {model.__name__} but not in the CRD")
    for name in sorted(set(fields) & set(properties)):
        info, prop = fields[name], properties[name]
        if info.is_required() and name not in required and "default" not in prop:
            found.append(f"{path}.{name}: {model.__name__} requires it, the CRD lets it be left out")
        inner = _model_of(info.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            found += _disagreements(inner, prop, f"{path}.{name}")
        elif (
            isinstance(inner, type)
            and issubclass(inner, Enum)
            and sorted(prop.get("enum", [])) != sorted(member.value for member in inner)
        ):
            found.append(f"{path}.{name}: CRD enum {prop.get('enum')} != {[m.value for m in inner]}")
    return found


@pytest.mark.parametrize("file", sorted(SPECS))
def test_the_models_read_what_the_crd_schema_lets_through(file: str) -> None:
    assert _disagreements(SPECS[file], _spec_schema(file), "spec") == []


_SCHEMA_FIELDS = frozenset(  # the fields of apiextensions.k8s.io/v1 JSONSchemaProps
    {
        "id",
        "$schema",
        "$ref",
        "description",
        "type",
        "format",
        "title",
        "default",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "multipleOf",
        "enum",
        "maxProperties",
        "minProperties",
        "required",
        "items",
        "allOf",
        "oneOf",
        "anyOf",
        "not",
        "properties",
        "additionalProperties",
        "patternProperties",
        "dependencies",
        "additionalItems",
        "definitions",
        "externalDocs",
        "example",
        "nullable",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-list-type",
        "x-kubernetes-map-type",
        "x-kubernetes-validations",
    }
)


def _unknown_fields(schema: dict[str, Any], path: str) -> list[str]:
    """Keys of a schema node that JSONSchemaProps does not have, here and below."""
    found = [f"{path}: {key!r}" for key in schema if key not in _SCHEMA_FIELDS]
    for key in ("properties", "patternProperties", "definitions"):
        for name, child in (schema.get(key) or {}).items():
            found += _unknown_fields(child or {}, f"{path}.{name}")
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            found += _unknown_fields(schema[key], f"{path}[{key}]")
    for key in ("allOf", "anyOf", "oneOf"):
        for index, child in enumerate(schema.get(key) or []):
            found += _unknown_fields(child, f"{path}.{key}[{index}]")
    return found


@pytest.mark.parametrize("path", sorted((binaries.REPO_ROOT / "crds").glob("*.yaml")), ids=lambda p: p.name)
def test_every_schema_node_is_a_json_schema_props(path: Any) -> None:
    """A YAML slip (a comma in an unquoted flow-style description) makes a key that is no schema
    field: `kubectl apply` drops it silently, but server-side apply (Flux, Argo CD's SSA) refuses
    the whole CRD, as Flux's dry-run did on the kind tier."""
    crd = yaml.safe_load(path.read_text())
    for version in crd["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        assert _unknown_fields(schema, version["name"]) == []
