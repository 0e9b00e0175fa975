"""Kopf indices: every replica's in-memory view of the customer keys and key vaults, kept by Kopf's
watches (the accounts, many more, are kept in ``accountstore`` instead).

Admission reads them on every replica; the leader's reconciliations read them instead of calling
the API for references. The indexing functions are ``async`` though they never wait: Kopf runs a
plain function in a thread, two thread hops for every event (for the accounts, when they were
indexed here, a fifth of the operator's CPU in a rotation).
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import kopf
from kubernetes_asyncio import client

from .. import models
from ..runtime import retry, watchcache


@kopf.index(models.GROUP, models.VERSION, "customerkeys")
async def customer_keys(
    namespace: str, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (namespace, name): {
            "spec": dict(body.get("spec", {})),
            "status": dict(body.get("status", {})),
            "generation": body.metadata.get("generation"),
        }
    }


@kopf.index(models.GROUP, models.VERSION, "keyvaults")
async def key_vaults(
    namespace: str, name: str, spec: kopf.Spec, **_: Any
) -> dict[str, tuple[str, dict[str, Any]]]:
    return {namespace: (name, dict(spec))}


class InitialSync:
    """Ready once the indices and the account store hold every object that existed when this
    replica started.

    Kopf fills them from its own watches and says nothing when the first listing is done, so
    this lists the three kinds itself (paged, once) and then waits, without further API calls, until
    each listed object is indexed. Only if the remainder stops shrinking for ``relist_after``
    seconds (objects deleted meanwhile are never indexed) does it list again. Listing every round
    instead kept a restart with 20,000 accounts from ever getting ready: decoding the listings took
    the event loop away from Kopf's indexing.
    """

    def __init__(self, api: Any, membership: dict[str, Any], *, relist_after: float = 30.0) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._membership = membership  # plural -> (namespace, name) -> bool
        self._relist_after = relist_after
        self._problem: str | None = "the first listing has not completed"
        self.synced = asyncio.Event()
        self._pending: dict[str, set[tuple[str, str]]] | None = None  # plural -> listed, not indexed
        self._progress = (0, time.monotonic())  # (objects left, since when)

    def problem(self) -> str | None:
        return self._problem

    async def run(self) -> None:
        await retry.every(0.2, self._check, doing="The initial listing", retry_after=1.0)

    async def _check(self) -> bool:
        """True once every object listed is indexed; what is not yet is the readiness problem."""
        if self._pending is None:
            try:
                self._pending = {plural: await self._listed(plural) for plural in self._membership}
            except Exception as error:
                self._problem = f"cannot list the custom resources: {retry.describe(error)}"
                raise
        pending = {
            plural: {key for key in keys if not self._membership[plural](key)}
            for plural, keys in self._pending.items()
        }
        left = sum(len(keys) for keys in pending.values())
        if not left:
            self._problem = None
            self.synced.set()
            return True
        self._problem = "watch caches still filling: " + ", ".join(
            f"{len(keys)} {plural} not indexed yet" for plural, keys in pending.items() if keys
        )
        self._pending = pending
        if left != self._progress[0]:
            self._progress = (left, time.monotonic())
        elif time.monotonic() - self._progress[1] > self._relist_after:
            self._pending, self._progress = None, (0, time.monotonic())  # gone meanwhile? list again
        return False

    async def _listed(self, plural: str) -> set[tuple[str, str]]:
        keys: set[tuple[str, str]] = set()
        listing = functools.partial(
            self._custom.list_cluster_custom_object, models.GROUP, models.VERSION, plural
        )
        async for page in watchcache.pages(listing):
            keys.update((item["metadata"]["namespace"], item["metadata"]["name"]) for item in page["items"])
        return keys
