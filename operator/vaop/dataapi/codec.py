"""An API object to its SealedObject and back: the one place that calls the object seal.

What the user sent lives only inside the seal: spec, labels, annotations (kubectl's
last-applied-configuration among them) and managed fields. In plaintext, beside it, only what
routing needs: kind, name, namespace, uid, account and generation; creationTimestamp and
resourceVersion are the SealedObject's own.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson

from ..crypto import objects
from . import kinds, storage

SEALED_METADATA = ("labels", "annotations", "managedFields")


def binding(kind: kinds.Kind, namespace: str, name: str, object_id: str, account_id: str) -> objects.Binding:
    return objects.Binding(kinds.GROUP, kind.kind, namespace, name, object_id, account_id)


def bound_account_id(record: storage.SealedObject) -> str:
    """The account ID a SealedObject is bound to (format 1 named it accountUID: the account's uid)."""
    spec = record["spec"]
    return str(spec.get("accountID") or spec.get("accountUID") or "")


def seal(
    obj: dict[str, Any],
    *,
    kind: kinds.Kind,
    namespace: str,
    object_id: str,
    account_id: str,
    account_key: bytes | objects.ObjectKeys,
) -> dict[str, Any]:
    """The ``sealed`` part of a SealedObject's spec for ``obj``."""
    meta = obj.get("metadata") or {}
    document = {
        "metadata": {field: meta[field] for field in SEALED_METADATA if meta.get(field)},
        "spec": obj.get("spec") or {},
    }
    return _sealed_part(document, binding(kind, namespace, meta["name"], object_id, account_id), account_key)


def resealed(
    record: storage.SealedObject, *, account_key: bytes | objects.ObjectKeys
) -> storage.SealedObject:
    """The same SealedObject in the current format: its content opened and sealed again, bound to
    the same object and account IDs (raises objects.SealError when it does not open)."""
    spec = record["spec"]
    kind = kinds.BY_KIND[spec["kind"]]
    namespace = record["metadata"]["namespace"]
    account = bound_account_id(record)
    document = open_content(record, account_key=account_key)
    sealed = _sealed_part(document, binding(kind, namespace, spec["name"], spec["uid"], account), account_key)
    fields = {k: v for k, v in spec.items() if k != "accountUID"}
    return {**record, "spec": {**fields, "namespace": namespace, "accountID": account, **sealed}}


def _sealed_part(
    document: dict[str, Any], bound: objects.Binding, account_key: bytes | objects.ObjectKeys
) -> dict[str, Any]:
    plaintext = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    sealed = objects.seal(plaintext, account_key=account_key, binding=bound)
    return {
        "format": sealed.version,
        "nonce": base64.b64encode(sealed.nonce).decode(),
        "ciphertext": base64.b64encode(sealed.ciphertext).decode(),
    }


def open_record(record: storage.SealedObject, *, account_key: bytes | objects.ObjectKeys) -> dict[str, Any]:
    """The API object a SealedObject holds (raises objects.SealError when it does not open)."""
    return assemble(record, open_content(record, account_key=account_key))


def open_content(record: storage.SealedObject, *, account_key: bytes | objects.ObjectKeys) -> dict[str, Any]:
    """What a SealedObject seals: {"metadata": {labels, annotations, managedFields}, "spec": ...}."""
    return parsed(unsealed(record, account_key=account_key))


def unsealed(record: storage.SealedObject, *, account_key: bytes | objects.ObjectKeys) -> bytes:
    """A SealedObject's sealed content, opened: JSON bytes for ``parsed``."""
    spec = record["spec"]
    kind = kinds.BY_KIND[spec["kind"]]
    sealed = objects.Sealed(
        int(spec["format"]), base64.b64decode(spec["nonce"]), base64.b64decode(spec["ciphertext"])
    )
    return objects.unseal(
        sealed,
        account_key=account_key,
        binding=binding(
            kind, record["metadata"]["namespace"], spec["name"], spec["uid"], bound_account_id(record)
        ),
    )


def parsed(plaintext: bytes) -> dict[str, Any]:
    """Opened content as a new document each call (callers may change what they are given)."""
    try:
        content: dict[str, Any] = orjson.loads(plaintext)
    except orjson.JSONDecodeError:  # what orjson refuses and json reads (integers past 64 bits)
        content = json.loads(plaintext)
    return content


def assemble(record: storage.SealedObject, document: dict[str, Any]) -> dict[str, Any]:
    """The API object from its SealedObject's routing fields and its opened content."""
    obj = _shell(record, kinds.BY_KIND[record["spec"]["kind"]])
    obj["metadata"].update(
        {k: v for k, v in (document.get("metadata") or {}).items() if k in SEALED_METADATA}
    )
    obj["spec"] = document.get("spec") or {}
    account = record["spec"]["accountName"]
    obj["status"] = _status(record, "True", "Sealed", f"Stored sealed with a key of account {account}.")
    return obj


def withheld(record: storage.SealedObject, *, reason: str, message: str) -> dict[str, Any]:
    """The object without its protected content (no spec, labels or annotations), saying why."""
    kind = kinds.BY_KIND[record["spec"]["kind"]]
    obj = _shell(record, kind)
    obj["status"] = _status(record, "False", reason, f"Content withheld: {message}.")
    return obj


def _shell(record: storage.SealedObject, kind: kinds.Kind) -> dict[str, Any]:
    spec, meta = record["spec"], record["metadata"]
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": kind.kind,
        "metadata": {
            "name": spec["name"],
            "namespace": meta["namespace"],
            "uid": spec["uid"],
            "generation": spec["generation"],
            # A dry run's answer has neither: nothing was stored.
            **{key: meta[key] for key in ("resourceVersion", "creationTimestamp") if meta.get(key)},
        },
    }


def _status(record: storage.SealedObject, status: str, reason: str, message: str) -> dict[str, Any]:
    generation = record["spec"]["generation"]
    return {
        "observedGeneration": generation,
        "conditions": [
            {
                "type": "Ready",
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": record["metadata"].get("creationTimestamp"),
                "observedGeneration": generation,
            }
        ],
    }
