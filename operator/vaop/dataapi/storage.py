"""SealedObjects in the main apiserver: where the data kinds live, sealed. No crypto here.

One SealedObject per data object, in the object's namespace, named by ``Kind.storage_name``,
labelled with its kind and account, owned by its account (garbage collection deletes an account's
data with it). Its resourceVersion is the data object's: optimistic concurrency is the apiserver's
own, and the versions of lists and watches (served from ``cache.py``) are etcd's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import labels, models
from . import kinds

GROUP = "internal.videoanalyzer.io"
VERSION = "v1alpha1"
PLURAL = "sealedobjects"
LABEL_KIND = labels.SEALED_OBJECT_KIND
LABEL_ACCOUNT = labels.SEALED_OBJECT_ACCOUNT

SealedObject = dict[str, Any]  # as the apiserver returns it
T = TypeVar("T")


async def _patiently(call: Callable[[], Awaitable[T]]) -> T:
    """The call, retried while the apiserver says 429 (its watch cache of SealedObjects is still
    starting, or it sheds load): it asks for a second's patience, and gets up to ten."""
    for attempt in range(10):
        try:
            return await call()
        except ApiException as error:
            if error.status != 429 or attempt == 9:
                raise
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


class Storage:
    def __init__(self, api: client.ApiClient) -> None:
        self._custom = client.CustomObjectsApi(api)

    async def get(self, kind: kinds.Kind, namespace: str, name: str) -> SealedObject | None:
        try:
            record: SealedObject = await _patiently(
                lambda: self._custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, kind.storage_name(name)
                )
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return record

    async def create(self, namespace: str, record: SealedObject, *, dry_run: bool) -> SealedObject:
        created: SealedObject = await self._custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, record, **_dry(dry_run)
        )
        return created

    async def replace(self, namespace: str, record: SealedObject, *, dry_run: bool) -> SealedObject:
        """Replace, conditional on ``record``'s resourceVersion (409 Conflict when it is stale)."""
        replaced: SealedObject = await self._custom.replace_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, record["metadata"]["name"], record, **_dry(dry_run)
        )
        return replaced

    async def delete(
        self,
        kind: kinds.Kind,
        namespace: str,
        name: str,
        *,
        uid: str | None,
        resource_version: str | None,
        dry_run: bool,
    ) -> None:
        preconditions = client.V1Preconditions(uid=uid, resource_version=resource_version)
        await self._custom.delete_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            kind.storage_name(name),
            body=client.V1DeleteOptions(preconditions=preconditions, dry_run=["All"] if dry_run else None),
        )


def record_for(
    kind: kinds.Kind,
    *,
    namespace: str,
    name: str,
    object_id: str,
    account_name: str,
    account_id: str,
    account_uid: str,
    generation: int,
    sealed: dict[str, Any],
    resource_version: str | None,
) -> SealedObject:
    """A SealedObject body: routing fields in plaintext, everything else in ``sealed``. It is owned by
    the account object (``account_uid``, for garbage collection) and sealed for the account ID."""
    metadata: dict[str, Any] = {
        "name": kind.storage_name(name),
        "namespace": namespace,
        "labels": {LABEL_KIND: kind.kind, LABEL_ACCOUNT: account_name},
        "ownerReferences": [owner(account_name, account_uid)],
    }
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SealedObject",
        "metadata": metadata,
        "spec": {
            "group": kinds.GROUP,
            "kind": kind.kind,
            "name": name,
            "namespace": namespace,
            "uid": object_id,
            "accountName": account_name,
            "accountID": account_id,
            "generation": generation,
            **sealed,
        },
    }


def owner(account_name: str, account_uid: str) -> dict[str, str]:
    """The ownerReference to the account object: garbage collection deletes its data with it."""
    return {
        "apiVersion": models.API_VERSION,
        "kind": "VideoAnalyzerAccount",
        "name": account_name,
        "uid": account_uid,
    }


def _dry(dry_run: bool) -> dict[str, str]:
    return {"dry_run": "All"} if dry_run else {}
