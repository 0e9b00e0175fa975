"""The registry strategy of the data API's kinds, as sample-apiserver has one per kind: what a write
may ask for (validation against the kind's model, fieldValidation), how a new object is named, and
what an update may change (never ``spec.accountName``: an object belongs to its account for life).

AccessPolicy and Video share it, each through its ``kinds.Kind`` (its spec model); the verbs
(``verbs.py``) call it, the request handling (``server.py``) never does.
"""

from __future__ import annotations

import re
import secrets
import string
from typing import Any

import pydantic

from . import codec, documents, kinds
from .documents import ApiError

NAME_MAX = 253
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


def validated(
    kind: kinds.Kind, namespace: str, body: Any, field_validation: str, *, name: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The object a write asks for, checked as the apiserver checks it (apiVersion, kind, namespace,
    name, spec against the kind's model), with unknown fields refused, dropped with a warning or
    dropped (fieldValidation Strict, Warn, Ignore); and the warnings."""
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON or YAML object", kind=kind, name=name)
    obj = documents.copied(body)
    if (
        obj.get("apiVersion", kinds.API_VERSION) != kinds.API_VERSION
        or obj.get("kind", kind.kind) != kind.kind
    ):
        raise ApiError(
            400,
            f"the object is {obj.get('apiVersion')}/{obj.get('kind')}, "
            f"expected {kinds.API_VERSION}/{kind.kind}",
            kind=kind,
            name=name,
        )
    meta = obj.setdefault("metadata", {}) or {}
    obj["metadata"] = meta
    if meta.get("namespace", namespace) != namespace:
        raise ApiError(
            400,
            f"the namespace of the object ({meta['namespace']}) does not match the namespace of the "
            f"request ({namespace})",
            kind=kind,
            name=name,
        )
    if name is not None and meta.get("name", name) != name:
        raise ApiError(
            400,
            f"the name of the object ({meta['name']}) does not match the name in the URL ({name})",
            kind=kind,
            name=name,
        )
    if name is not None:
        meta["name"] = name
    if meta.get("finalizers"):
        raise ApiError(422, "metadata.finalizers are not supported on data objects", kind=kind, name=name)
    obj.pop("status", None)  # computed on every read
    warnings: list[str] = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise ApiError(
            422,
            f'{kind.kind}.{kinds.GROUP} "{meta.get("name", "")}" is invalid: spec: Required value',
            kind=kind,
            name=name,
            causes=[{"reason": "FieldValueRequired", "message": "Required value", "field": "spec"}],
        )
    try:
        kind.spec.model_validate(spec)
    except pydantic.ValidationError as error:
        unknown = [e for e in error.errors() if e["type"] == "extra_forbidden"]
        others = [e for e in error.errors() if e["type"] != "extra_forbidden"]
        if others or (unknown and field_validation == "Strict"):
            raise _invalid(kind, meta.get("name", ""), others or unknown) from None
        for problem in unknown:
            _drop(spec, problem["loc"])
            if field_validation == "Warn":
                warnings.append(f'unknown field "spec.{".".join(str(p) for p in problem["loc"])}"')
    return {"apiVersion": kinds.API_VERSION, "kind": kind.kind, "metadata": meta, "spec": spec}, warnings


def named(kind: kinds.Kind, obj: dict[str, Any]) -> str:
    """The new object's name: given, or made from metadata.generateName; checked either way."""
    meta = obj["metadata"]
    name = meta.get("name")
    if not name:
        prefix = meta.get("generateName")
        if not prefix:
            raise ApiError(422, "metadata.name or metadata.generateName is required", kind=kind)
        name = prefix + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
        meta["name"] = name
    _check_name(kind, name)
    return str(name)


def check_update(kind: kinds.Kind, live: dict[str, Any], obj: dict[str, Any]) -> None:
    """What an update may not change."""
    old_account, new_account = live["spec"].get("accountName"), obj["spec"].get("accountName")
    if old_account != new_account:
        raise field_error(
            kind,
            live["metadata"]["name"],
            "spec.accountName",
            f"Invalid value: {new_account!r}: field is immutable "
            f"(the object belongs to account {old_account})",
        )


def writable_part(obj: dict[str, Any]) -> dict[str, Any]:
    """What a write may change: apiVersion, kind, metadata (name, labels, annotations, managed fields,
    resourceVersion) and spec."""
    meta = obj["metadata"]
    kept = {
        k: documents.copied(meta[k])
        for k in ("name", "namespace", "resourceVersion", *codec.SEALED_METADATA)
        if k in meta
    }
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": kept,
        "spec": documents.copied(obj.get("spec", {})),
    }


def content(obj: dict[str, Any]) -> Any:
    """What a write could change, managed fields' timestamps aside."""
    meta = obj["metadata"]
    managed = [{k: v for k, v in entry.items() if k != "time"} for entry in meta.get("managedFields") or []]
    return obj["spec"], meta.get("labels") or {}, meta.get("annotations") or {}, managed


def _check_name(kind: kinds.Kind, name: str) -> None:
    if len(name) > NAME_MAX or not _NAME.fullmatch(name):
        raise field_error(
            kind,
            name,
            "metadata.name",
            f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
            "alphanumeric "
            "characters, '-' or '.', and must start and end with an alphanumeric character",
        )


def field_error(
    kind: kinds.Kind, name: str, field: str, message: str, *, reason: str = "FieldValueInvalid"
) -> ApiError:
    """A 422 as the apiserver makes it: kubectl prints the cause, so it carries the whole message."""
    return ApiError(
        422,
        f'{kind.kind}.{kinds.GROUP} "{name}" is invalid: {field}: {message}',
        kind=kind,
        name=name,
        causes=[{"reason": reason, "message": message, "field": field}],
    )


def _drop(spec: dict[str, Any], location: tuple[Any, ...]) -> None:
    node: Any = spec
    for part in location[:-1]:
        node = node[part]
    if isinstance(node, dict):
        node.pop(location[-1], None)


def _invalid(kind: kinds.Kind, name: str, errors: list[Any]) -> ApiError:
    causes = []
    for problem in errors:
        field = "spec." + ".".join(str(p) for p in problem["loc"])
        message = "unknown field" if problem["type"] == "extra_forbidden" else problem["msg"]
        causes.append({"reason": "FieldValueInvalid", "message": message, "field": field})
    summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
    return ApiError(
        422, f'{kind.kind}.{kinds.GROUP} "{name}" is invalid: {summary}', kind=kind, name=name, causes=causes
    )
