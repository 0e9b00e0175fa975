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

from ..crypto import objects
from . import kinds, storage

SEALED_METADATA = ("labels", "annotations", "managedFields")


def binding(kind: kinds.Kind, namespace: str, name: str, uid: str, account_uid: str) -> objects.Binding:
    return objects.Binding(kinds.GROUP, kind.kind, namespace, name, uid, account_uid)


def seal(
    obj: dict[str, Any], *, kind: kinds.Kind, namespace: str, uid: str, account_uid: str, account_key: bytes
) -> dict[str, Any]:
    """The ``sealed`` part of a SealedObject's spec for ``obj``."""
    meta = obj.get("metadata") or {}
    document = {
        "metadata": {field: meta[field] for field in SEALED_METADATA if meta.get(field)},
        "spec": obj.get("spec") or {},
    }
    plaintext = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    sealed = objects.seal(
        plaintext, account_key=account_key, binding=binding(kind, namespace, meta["name"], uid, account_uid)
    )
    return {
        "format": sealed.version,
        "nonce": base64.b64encode(sealed.nonce).decode(),
        "ciphertext": base64.b64encode(sealed.ciphertext).decode(),
    }


def open_record(record: storage.Record, *, account_key: bytes) -> dict[str, Any]:
    """The API object a SealedObject holds (raises objects.SealError when it does not open)."""
    spec = record["spec"]
    kind = kinds.BY_KIND[spec["kind"]]
    sealed = objects.Sealed(
        int(spec["format"]), base64.b64decode(spec["nonce"]), base64.b64decode(spec["ciphertext"])
    )
    plaintext = objects.unseal(
        sealed,
        account_key=account_key,
        binding=binding(kind, record["metadata"]["namespace"], spec["name"], spec["uid"], spec["accountUID"]),
    )
    return assemble(record, json.loads(plaintext))


def assemble(record: storage.Record, document: dict[str, Any]) -> dict[str, Any]:
    """The API object from its SealedObject's routing fields and its opened content."""
    obj = _shell(record, kinds.BY_KIND[record["spec"]["kind"]])
    obj["metadata"].update(
        {k: v for k, v in (document.get("metadata") or {}).items() if k in SEALED_METADATA}
    )
    obj["spec"] = document.get("spec") or {}
    account = record["spec"]["accountName"]
    obj["status"] = _status(record, "True", "Sealed", f"Stored sealed with a key of account {account}.")
    return obj


def withheld(record: storage.Record, *, reason: str, message: str) -> dict[str, Any]:
    """The object without its protected content (no spec, labels or annotations), saying why."""
    kind = kinds.BY_KIND[record["spec"]["kind"]]
    obj = _shell(record, kind)
    obj["status"] = _status(record, "False", reason, f"Content withheld: {message}.")
    return obj


def _shell(record: storage.Record, kind: kinds.Kind) -> dict[str, Any]:
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


def _status(record: storage.Record, status: str, reason: str, message: str) -> dict[str, Any]:
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
