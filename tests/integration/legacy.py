"""What the operator left behind before account IDs existed (format 1: every envelope and sealed
object bound to the account's metadata.uid; no account-id annotation), written here as that
operator wrote it, so upgrade tests start from the state a running installation is in.

An independent writer on purpose: the operator no longer writes format 1. That it matches what the
old operator really wrote is checked against the vectors recorded from it (tests/fixtures/formats).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from kubernetes import client

from tests import helpers
from vaop import labels, platformkeys
from vaop.crypto import envelope
from vaop.crypto import rsa as rsa_wrap
from vaop.dataapi import kinds
from vaopdev import environment

OPERATOR = f"system:serviceaccount:{environment.OPERATOR_NAMESPACE}:{environment.OPERATOR_SERVICE_ACCOUNT}"


@contextlib.contextmanager
def old_operator_leading(
    admin: client.ApiClient, operator: environment.OperatorProcess
) -> Iterator[client.ApiClient]:
    """The old operator's last moments: it holds the leader's Lease while the new operator's replica
    is up (serving admission, as during a rolling upgrade) but waits to lead. Yields a client acting
    as the operator, to write what the old one wrote; leaving, the old leader is gone (its Lease too)
    and the new operator leads within its retry period."""
    operator.stop()
    leases = client.CoordinationV1Api(admin)
    now = datetime.datetime.now(datetime.UTC)
    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name="video-analyzer-operator"),
        spec=client.V1LeaseSpec(
            holder_identity="the-old-operator", lease_duration_seconds=3600, acquire_time=now, renew_time=now
        ),
    )
    leases.delete_namespaced_lease("video-analyzer-operator", environment.OPERATOR_NAMESPACE)
    leases.create_namespaced_lease(environment.OPERATOR_NAMESPACE, body)
    try:
        operator.start()
        with as_operator(admin) as old_operator:
            yield old_operator
    finally:
        leases.delete_namespaced_lease("video-analyzer-operator", environment.OPERATOR_NAMESPACE)


def as_operator(admin: client.ApiClient) -> client.ApiClient:
    """An admin client that acts as the operator (its writes were the operator's: the webhook lets
    them by, as it let the old operator's)."""
    return client.ApiClient(admin.configuration, header_name="Impersonate-User", header_value=OPERATOR)


def past_the_webhook(admin: client.ApiClient) -> client.ApiClient:
    """An admin client whose writes the webhook leaves out (the operator's user, with an administrator's
    group): what was written before a webhook rule existed, or while the webhook was off."""
    api = client.ApiClient(admin.configuration)
    api.set_default_header("Impersonate-User", OPERATOR)
    api.set_default_header("Impersonate-Group", "system:masters")
    return api


def _canonical(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def seal_envelope(
    inner_wrapped: bytes, *, uid: str, namespace: str, name: str, inner: dict[str, str], outer_key: bytes
) -> bytes:
    """A format 1 envelope, serialised: the outer layer's associated data binds the account's uid."""
    header = {
        "v": 1,
        "account": {"uid": uid, "namespace": namespace, "name": name},
        "inner": inner,
        "outer": {"alg": "A256GCM", "keyVersion": "1"},
    }
    nonce = os.urandom(12)
    ciphertext = AESGCM(outer_key).encrypt(nonce, inner_wrapped, _canonical(header))
    return _canonical(
        {
            **header,
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(ciphertext).decode(),
        }
    )


def seal_object(
    document: dict[str, Any],
    *,
    account_key: bytes,
    kind: str,
    namespace: str,
    name: str,
    uid: str,
    account_uid: str,
) -> dict[str, Any]:
    """The sealed part of a format 1 SealedObject: HKDF over the object's uid, bound to the account's uid."""
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"videoanalyzer.io data object v1\x00" + uid.encode(),
    ).derive(account_key)
    aad = _canonical(
        {
            "account_uid": account_uid,
            "group": kinds.GROUP,
            "kind": kind,
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "v": 1,
        }
    )
    nonce = os.urandom(12)
    ciphertext = AESGCM(key).encrypt(nonce, _canonical(document), aad)
    return {
        "format": 1,
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }


@dataclass(frozen=True)
class Legacy:
    """An account as the old operator left it: its key-check value and its Video's content."""

    name: str
    uid: str
    key_check_value: str
    video: dict[str, Any]


def platform_keys(admin: client.ApiClient) -> tuple[bytes, rsa_keys.RSAPrivateKey]:
    """The infrastructure key version 1 and the system key version 1 (once the operator made them)."""
    core = client.CoreV1Api(admin)
    infra = core.read_namespaced_secret(platformkeys.INFRASTRUCTURE_SECRET, environment.OPERATOR_NAMESPACE)
    system = core.read_namespaced_secret("vaop-system-key-v1", environment.OPERATOR_NAMESPACE)
    private = rsa_wrap.load_private_key(base64.b64decode(system.data["key.pem"]))
    assert isinstance(private, rsa_keys.RSAPrivateKey)
    return base64.b64decode(infra.data["1"]), private


def _old_conditions(inner_ref: tuple[str, str, str]) -> list[dict[str, Any]]:
    """An Active account's conditions, worded as the old operator worded them."""
    kind, vault, key_name = inner_ref
    where = (
        "the system key (version 1)"
        if kind == "SystemKey"
        else f"key {key_name} version 1 in KeyVault {vault}"
    )
    said = (
        ("Ready", "True", "Ready", f"The account key is wrapped by {where}."),
        ("AccountKeyReady", "True", "Wrapped", f"Wrapped by {where}, double encrypted."),
        ("KeyInaccessible", "False", "KeyAccessible", f"{where[0].upper()}{where[1:]} is usable."),
        ("VaultDegraded", "False", "KeyAccessible", "The vault answers."),
    )
    return [
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": "2026-11-01T00:00:00Z",
            "observedGeneration": 1,
        }
        for type_, status, reason, message in said
    ]


def provision(
    admin: client.ApiClient,
    operator: client.ApiClient,
    namespace: str,
    name: str,
    *,
    customer_key: tuple[str, str, bytes] | None = None,  # (CustomerKey, its vault, key version 1's PEM)
    identity: str | None = None,
    keys: tuple[bytes, rsa_keys.RSAPrivateKey] | None = None,  # platform_keys(), read once for many
) -> Legacy:
    """The account, its format 1 Secret, its old status and one Video in a format 1 SealedObject,
    each written as the old operator did (``operator``: a client acting as the operator)."""
    outer_key, system_key = keys or platform_keys(admin)
    if customer_key is None:
        spec: dict[str, Any] = {"region": "westeurope", "encryption": {"type": "SystemKey"}}
        public, inner_ref = system_key.public_key(), ("SystemKey", "", "system-key")
    else:
        key, vault, pem = customer_key
        encryption: dict[str, Any] = {"type": "CustomerKey", "keyRef": {"name": key}}
        if identity:
            encryption["identity"] = {"serviceAccountName": identity}
        spec = {"region": "westeurope", "encryption": encryption}
        customer = rsa_wrap.load_private_key(pem)
        assert isinstance(customer, rsa_keys.RSAPrivateKey)
        public, inner_ref = customer.public_key(), ("CustomerKey", vault, "kek")
    account = helpers.create(admin, namespace, "VideoAnalyzerAccount", name, spec)
    uid = account["metadata"]["uid"]
    account_key = envelope.new_account_key()
    kcv = envelope.key_check_value(account_key)
    inner = {
        "type": inner_ref[0],
        "provider": "kubernetes",
        "key_vault": inner_ref[1],
        "key_name": inner_ref[2],
        "key_version": "1",
        "algorithm": rsa_wrap.RSA_OAEP_256,
    }
    sealed = seal_envelope(
        rsa_wrap.wrap(public, account_key),
        uid=uid,
        namespace=namespace,
        name=name,
        inner=inner,
        outer_key=outer_key,
    )
    owner = {
        "apiVersion": "videoanalyzer.io/v1alpha1",
        "kind": "VideoAnalyzerAccount",
        "name": name,
        "uid": uid,
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"{name}-account-key",
            "namespace": namespace,
            "labels": {
                labels.MANAGED_BY: labels.OPERATOR_NAME,
                labels.COMPONENT: labels.ACCOUNT_KEY_COMPONENT,
                labels.ACCOUNT: name,
            },
            "annotations": {
                labels.ANNOTATION_KEY_CHECK_VALUE: kcv,
                labels.ANNOTATION_WRAPPED_AT: "2026-11-01T00:00:00Z",
            },
            "ownerReferences": [{**owner, "controller": True}],
        },
        "type": labels.ACCOUNT_KEY_SECRET_TYPE,
        "data": {labels.ENVELOPE_DATA_KEY: base64.b64encode(sealed).decode()},
    }
    client.CoreV1Api(operator).create_namespaced_secret(namespace, secret)
    wrapped_by = {"type": inner_ref[0], "keyName": inner_ref[2], "keyVersion": "1"}
    if inner_ref[1]:
        wrapped_by["keyVault"] = inner_ref[1]
    status = {
        "state": "Active",
        "observedGeneration": 1,
        "accountKey": {
            "secretName": f"{name}-account-key",
            "keyCheckValue": kcv,
            "wrappedBy": wrapped_by,
            "algorithm": "RSA-OAEP-256+A256GCM",
            "wrappedAt": "2026-11-01T00:00:00Z",
        },
        "conditions": _old_conditions(inner_ref),
    }
    helpers.custom(admin).patch_namespaced_custom_object_status(
        "videoanalyzer.io", "v1alpha1", namespace, "videoanalyzeraccounts", name, {"status": status}
    )
    video_name, video_uid = f"{name}-lobby", str(os.urandom(16).hex())
    content = {
        "metadata": {"labels": {"camera": video_name}},
        "spec": {"accountName": name, "title": f"{name} lobby"},
    }
    video = kinds.BY_KIND["Video"]
    sealed_object = {
        "apiVersion": "internal.videoanalyzer.io/v1alpha1",
        "kind": "SealedObject",
        "metadata": {
            "name": video.storage_name(video_name),
            "namespace": namespace,
            "labels": {labels.SEALED_OBJECT_KIND: "Video", labels.SEALED_OBJECT_ACCOUNT: name},
            "ownerReferences": [owner],
        },
        "spec": {
            "group": kinds.GROUP,
            "kind": "Video",
            "name": video_name,
            "uid": video_uid,
            "accountName": name,
            "accountUID": uid,
            "generation": 1,
            **seal_object(
                content,
                account_key=account_key,
                kind="Video",
                namespace=namespace,
                name=video_name,
                uid=video_uid,
                account_uid=uid,
            ),
        },
    }
    helpers.custom(operator).create_namespaced_custom_object(
        "internal.videoanalyzer.io", "v1alpha1", namespace, "sealedobjects", sealed_object
    )
    return Legacy(name, uid, kcv, {"name": video_name, "uid": video_uid, **content})
