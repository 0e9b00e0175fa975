"""The SealedObjects in each replica's memory: the data API's lists and watches are served from here,
as the kube-apiserver serves its own kinds from its watch cache.

One reflector (a paged list, then a watch, forever) fills it, kept as sealed as it is stored:
nothing is opened until a request asks for it, and an account that loses its key loses its data on
the next read. Beside the objects it keeps:

- the version it has reached (the watch's events and bookmarks), and waiters on a version;
- a history of recent changes, so a watch resumes from a version a client already holds, and fans
  out to any number of watchers from the one upstream watch;
- listing snapshots, so the pages of one list are consistent with each other (its continue token).

Consistent reads. A list with no resourceVersion must show every write that finished before it, as
the apiserver's does. The apiserver waits for its cache to reach etcd's current revision, which
etcd's progress notifications move forward; a client of the apiserver has no such notification, so
``consistent()`` writes one: a merge patch to the SealedObject ``vaop-progress`` (kind Progress, in
the operator's namespace, holding nothing) and a wait until the watch delivers it. Watch order is
revision order, so every SealedObject written before the patch is in the cache by then. Concurrent
readers share one such write: a reader waits for the next one that starts after it arrived.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import itertools
import json
import logging
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import kubeclient, metrics
from ..runtime import watchcache
from . import kinds, storage
from .documents import ApiError

logger = logging.getLogger(__name__)

PROGRESS_KIND = "Progress"  # the one SealedObject that holds no data: consistent reads' marker
PROGRESS_NAME = "vaop-progress"
HISTORY = 10_000  # changes kept for watches that resume (the apiserver keeps 100 to 100,000)
SNAPSHOTS = 64  # listings whose later pages can still be asked for
SNAPSHOT_SECONDS = 300.0  # a continue token older than this is expired (410), as after etcd's compaction
WATCHER_BACKLOG = 1_000  # events a slow watcher may fall behind before it is closed (it resumes)
VERSION_WAIT = 3.0  # a list at a version this cache has not reached yet: the apiserver's wait, then 504

Key = tuple[str, str]  # (namespace, the data object's name): the apiserver's order
Event = tuple[int, str, storage.SealedObject]  # (version, ADDED/MODIFIED/DELETED, record)


class Gone(Exception):
    """The version asked for is older than what the cache still holds (410: list again)."""


@dataclass
class _Snapshot:
    records: list[storage.SealedObject]
    version: int
    made: float
    listing: tuple[str, str | None]  # (kind, namespace): a token goes on with the same list only


class SealedCache:
    def __init__(self, api: client.ApiClient, *, namespace: str) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._namespace = namespace  # where the progress marker lives
        self._objects: dict[str, dict[str, dict[str, storage.SealedObject]]] = {k: {} for k in kinds.BY_KIND}
        self._version = 0
        self._history: collections.deque[Event] = collections.deque(maxlen=HISTORY)
        self._oldest = 0  # the history holds every change after this version
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._watchers: set[asyncio.Queue[Event | None]] = set()
        self._snapshots: collections.OrderedDict[str, _Snapshot] = collections.OrderedDict()
        self._snapshot_ids = itertools.count(1)
        self._marking: asyncio.Task[None] | None = None
        self._next_mark: asyncio.Future[int] | None = None
        self.synced = asyncio.Event()
        self._measured()

    @property
    def version(self) -> int:
        return self._version

    def held(self) -> int:
        return sum(len(names) for spaces in self._objects.values() for names in spaces.values())

    def _measured(self) -> None:
        """Its sizes as ``vaop_cache_entries``: flat after the first listing, or something leaks."""
        metrics.CACHE_ENTRIES.labels("sealed-objects").set_function(self.held)
        metrics.CACHE_ENTRIES.labels("sealed-object-history").set_function(lambda: len(self._history))
        metrics.CACHE_ENTRIES.labels("sealed-object-snapshots").set_function(lambda: len(self._snapshots))

    # ---- filling it: the reflector -------------------------------------------------------------------

    async def run(self) -> None:
        listing = functools.partial(
            self._custom.list_cluster_custom_object, storage.GROUP, storage.VERSION, storage.PLURAL
        )
        await watchcache.reflect(
            listing, self, what="SealedObjects (data API)", label_selector=storage.LABEL_KIND
        )

    async def replace(self, listed: AsyncIterator[storage.SealedObject]) -> None:
        """A (re)list: what changed while no watch was open goes to the history, as events."""
        fresh: dict[str, dict[str, dict[str, storage.SealedObject]]] = {k: {} for k in kinds.BY_KIND}
        async for record in listed:
            kind = record["spec"].get("kind")
            if kind in fresh:
                namespace, name = _key(record)
                fresh[kind].setdefault(namespace, {})[name] = _kept(record)
        if self.synced.is_set():
            after = self._version + 1  # a relist's changes are news to every watcher
            for kind in kinds.BY_KIND:
                known, found = _flat(self._objects[kind]), _flat(fresh[kind])
                for key in known.keys() - found.keys():
                    self._changed(after, "DELETED", known[key])
                for key, record in found.items():
                    if key not in known:
                        self._changed(after, "ADDED", record)
                    elif watchcache.later_version(_rv(record), _rv(known[key])):
                        self._changed(after, "MODIFIED", record)
        self._objects = fresh

    def changed(self, kind: str, obj: storage.SealedObject) -> None:
        spec_kind = obj.get("spec", {}).get("kind")
        if spec_kind not in self._objects:
            return  # the progress marker: a version only, which progressed() takes
        record = _kept(obj)
        namespace, name = _key(record)
        names = self._objects[spec_kind].setdefault(namespace, {})
        if kind == "DELETED":
            names.pop(name, None)
            if not names:
                del self._objects[spec_kind][namespace]
        else:
            names[name] = record
        self._changed(_version_of(record), kind, record)

    def progressed(self, version: str) -> None:
        """The watch has gone past ``version`` (an event or a bookmark): readers waiting for it go on."""
        try:
            reached = int(version)
        except (TypeError, ValueError):
            return
        if not self.synced.is_set():
            self._oldest = reached  # the history holds the changes after the first listing
            self.synced.set()
        if reached <= self._version:
            return
        self._version = reached
        still = []
        for wanted, waiter in self._waiters:
            if wanted > reached:
                still.append((wanted, waiter))
            elif not waiter.done():
                waiter.set_result(None)
        self._waiters = still

    def _changed(self, version: int, kind: str, record: storage.SealedObject) -> None:
        if len(self._history) == self._history.maxlen:
            self._oldest = self._history[0][0]
        event = (version, kind, record)
        self._history.append(event)
        for queue in list(self._watchers):
            if queue.qsize() >= WATCHER_BACKLOG:
                self._watchers.discard(queue)  # too slow: closed, so it resumes from what it got
                queue.put_nowait(None)
            else:
                queue.put_nowait(event)

    # ---- consistent reads ------------------------------------------------------------------------------

    async def consistent(self) -> None:
        """Wait until the cache holds every write that finished before this call (see the module)."""
        await self.synced.wait()
        if self._next_mark is None:
            self._next_mark = asyncio.get_running_loop().create_future()
            if self._marking is None:
                self._marking = asyncio.create_task(self._mark_in_turn(), name="data-api-progress")
        version = await asyncio.shield(self._next_mark)
        await self.reached(version)

    async def _mark_in_turn(self) -> None:
        """One marker write at a time; the readers that came during one share the next."""
        try:
            while self._next_mark is not None:
                mark, self._next_mark = self._next_mark, None
                try:
                    mark.set_result(await self._write_mark())
                except Exception as error:
                    mark.set_exception(_storage_error(error))
                    mark.exception()  # retrieved here: a reader that gave up leaves no warning
        finally:
            self._marking = None

    async def _write_mark(self) -> int:
        try:
            written = await self._patch_mark()
        except ApiException as error:
            if error.status != 404:
                raise
            try:
                written = await self._custom.create_namespaced_custom_object(
                    storage.GROUP,
                    storage.VERSION,
                    self._namespace,
                    storage.PLURAL,
                    progress_marker(self._namespace),
                )
            except ApiException as conflict:
                if conflict.status != 409:
                    raise
                written = await self._patch_mark()  # another replica made it meanwhile
        return int(written["metadata"]["resourceVersion"])

    async def _patch_mark(self) -> storage.SealedObject:
        stamp = {"spec": {"generation": time.time_ns() // 1000}}  # a new value: a write, a new revision
        written: storage.SealedObject = await self._custom.patch_namespaced_custom_object(
            storage.GROUP,
            storage.VERSION,
            self._namespace,
            storage.PLURAL,
            PROGRESS_NAME,
            stamp,
            _content_type=kubeclient.MERGE_PATCH,
        )
        return written

    # ---- reading it ------------------------------------------------------------------------------------

    async def reached(self, version: int) -> None:
        """Wait until the cache holds every change up to ``version``; 504 after ``VERSION_WAIT``, as
        the apiserver answers a version its cache does not reach in time."""
        await self.synced.wait()
        if version <= self._version:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (version, waiter)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(waiter, VERSION_WAIT)
        except TimeoutError:
            raise ApiError(
                504, f"Too large resource version: {version}, current resource version: {self._version}"
            ) from None
        finally:
            if entry in self._waiters:  # gave up (or was cancelled): a version never reached holds nothing
                self._waiters.remove(entry)

    def listed(self, kind: kinds.Kind, namespace: str | None) -> list[storage.SealedObject]:
        """The kind's records in the namespace (all namespaces: None), in the apiserver's order."""
        spaces = self._objects[kind.kind]
        chosen = sorted(spaces) if namespace is None else [namespace] if namespace in spaces else []
        return [names[name] for space in chosen for names in (spaces[space],) for name in sorted(names)]

    def found(self, kind: kinds.Kind, namespace: str, name: str) -> storage.SealedObject | None:
        """The record of one data object, as this cache holds it."""
        return self._objects[kind.kind].get(namespace, {}).get(name)

    # ---- pages -----------------------------------------------------------------------------------------

    def snapshot(
        self, records: list[storage.SealedObject], version: int, kind: kinds.Kind, namespace: str | None
    ) -> str:
        """Keep a listing (at ``version``) for its later pages; returns its id for the continue token."""
        self._expire_snapshots()
        ident = str(next(self._snapshot_ids))
        self._snapshots[ident] = _Snapshot(records, version, time.monotonic(), (kind.kind, namespace))
        while len(self._snapshots) > SNAPSHOTS:
            self._snapshots.popitem(last=False)
        return ident

    def resumed(
        self, token: str, kind: kinds.Kind, namespace: str | None
    ) -> tuple[str, list[storage.SealedObject], int, int]:
        """(snapshot id, its records, its version, the offset to go on from) for a continue token of
        a list of ``kind`` in ``namespace``."""
        try:
            fields = json.loads(base64.urlsafe_b64decode(token.encode()))
            ident, offset = str(fields["s"]), int(fields["o"])
        except (ValueError, KeyError, TypeError):
            raise ApiError(
                400, "the continue token is not one this server gave: list again without it"
            ) from None
        self._expire_snapshots()
        snapshot = self._snapshots.get(ident)
        if snapshot is None:
            raise ApiError(
                410,
                "The provided continue parameter is too old to display a consistent list result. "
                "You can start a new list without the continue parameter.",
                reason="Expired",
            )
        if snapshot.listing != (kind.kind, namespace):
            raise ApiError(400, "the continue token belongs to another list: list again without it")
        return ident, snapshot.records, snapshot.version, offset

    @staticmethod
    def token(ident: str, offset: int) -> str:
        return base64.urlsafe_b64encode(json.dumps({"s": ident, "o": offset}).encode()).decode()

    def _expire_snapshots(self) -> None:
        cutoff = time.monotonic() - SNAPSHOT_SECONDS
        while self._snapshots and next(iter(self._snapshots.values())).made < cutoff:
            self._snapshots.popitem(last=False)

    # ---- watches ---------------------------------------------------------------------------------------

    async def changes(
        self, kind: kinds.Kind, namespace: str | None, *, since: int | None
    ) -> AsyncGenerator[Event, None]:
        """Every change of the kind in the namespace after version ``since`` (None: the current
        objects first, as ADDED), until the caller stops; raises Gone when ``since`` is older than
        the history. Ends when the watcher falls too far behind (it resumes, as from the apiserver)."""
        await self.synced.wait()
        if since is not None and since > self._version:
            await self.reached(since)
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._watchers.add(queue)  # from here on, nothing is missed
        try:
            if since is None:
                first: Iterable[Event] = (
                    (self._version, "ADDED", record) for record in self.listed(kind, namespace)
                )
            else:
                if since < self._oldest:
                    raise Gone(f"too old resource version: {since} ({self._oldest})")
                first = [event for event in self._history if event[0] > since]
            seen = since if since is not None else self._version
            for event in list(first):
                if _selected(event[2], kind, namespace):
                    yield event
            while True:
                change = await queue.get()
                if change is None:
                    return
                if change[0] > seen and _selected(change[2], kind, namespace):
                    yield change
        finally:
            self._watchers.discard(queue)


def progress_marker(namespace: str) -> storage.SealedObject:
    """The SealedObject consistent reads write to: it holds nothing and is never backed up."""
    return {
        "apiVersion": f"{storage.GROUP}/{storage.VERSION}",
        "kind": "SealedObject",
        "metadata": {
            "name": PROGRESS_NAME,
            "namespace": namespace,
            "labels": {storage.LABEL_KIND: PROGRESS_KIND, "velero.io/exclude-from-backup": "true"},
        },
        "spec": {
            "group": kinds.GROUP,
            "kind": PROGRESS_KIND,
            "name": PROGRESS_NAME,
            "uid": PROGRESS_NAME,
            "accountName": "",
            "accountID": "",
            "generation": 1,
            "format": 2,
            "nonce": "",
            "ciphertext": "",
        },
    }


def _kept(record: storage.SealedObject) -> storage.SealedObject:
    """What the cache keeps of a record: what reads use (not managedFields, ownerReferences, labels,
    uid), with the keys and the values many records share held once: 4.6 KB a record becomes 1.9."""
    meta, spec = record["metadata"], record["spec"]
    return {
        "metadata": {_KEYS[k]: _shared(k, meta[k]) for k in _KEPT_METADATA if k in meta},
        "spec": {sys.intern(k): _shared(k, v) for k, v in spec.items()},
    }


_KEPT_METADATA = ("name", "namespace", "resourceVersion", "creationTimestamp")
_KEYS = {k: sys.intern(k) for k in _KEPT_METADATA}
_SHARED_VALUES = frozenset(("namespace", "group", "kind", "accountName", "accountID", "accountUID"))


def _shared(field: str, value: Any) -> Any:
    return sys.intern(value) if field in _SHARED_VALUES and isinstance(value, str) else value


def _flat(spaces: dict[str, dict[str, storage.SealedObject]]) -> dict[Key, storage.SealedObject]:
    return {(space, name): record for space, names in spaces.items() for name, record in names.items()}


def _key(record: storage.SealedObject) -> Key:
    return record["metadata"]["namespace"], record["spec"]["name"]


def _rv(record: storage.SealedObject) -> str:
    return str(record["metadata"].get("resourceVersion", ""))


def _version_of(record: storage.SealedObject) -> int:
    try:
        return int(_rv(record))
    except ValueError:
        return 0


def _selected(record: storage.SealedObject, kind: kinds.Kind, namespace: str | None) -> bool:
    return record["spec"]["kind"] == kind.kind and (
        namespace is None or record["metadata"]["namespace"] == namespace
    )


def _storage_error(error: Exception) -> Exception:
    if isinstance(error, ApiException):
        return ApiError(
            503 if error.status >= 500 or error.status == 0 else error.status,
            f"storage: the consistent read's marker could not be written ({error.reason})",
        )
    return error
