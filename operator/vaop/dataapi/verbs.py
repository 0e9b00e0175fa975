"""The verbs of the data API (its registry), as the apiserver does them for its own kinds: request
handling is ``server.py``, what a write may ask for is ``strategy.py``, sealing and opening with the
account's key is ``sealing.py``, storage is ``storage.py``.

Reads open each SealedObject with its account's key; when the account cannot be used
(KeyInaccessible, or not Active) the object still comes back, without its protected content and
with a Ready condition saying why. Writes need an Active account in the same namespace: a locked
one refuses them (403, naming the state and reason), a missing or not yet Active one too (422,
saying what to fix). DELETE needs no key and always works.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import yaml
from kubernetes_asyncio.client.exceptions import ApiException

from . import cache, codec, fields, kinds, patches, sealing, selectors, storage, strategy
from . import keys as account_keys
from .documents import ApiError


@dataclass
class Written:
    obj: dict[str, Any]
    created: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WriteOptions:
    manager: str
    dry_run: bool = False
    field_validation: str = "Strict"  # Strict, Warn or Ignore, as the apiserver's fieldValidation
    force: bool = False


class DataService:
    def __init__(
        self, store: storage.Storage, keys: account_keys.AccountKeys, sealed: cache.SealedCache
    ) -> None:
        self._store = store  # consistent GETs (as the apiserver's) and writes
        self._cache = sealed  # lists, watches, and GETs at a resourceVersion
        self._sealing = sealing.Sealing(keys)

    # ---- reads ------------------------------------------------------------------------------------

    async def get(
        self, kind: kinds.Kind, namespace: str, name: str, *, resource_version: str | None = None
    ) -> dict[str, Any]:
        """Without a resourceVersion, the stored object (every write finished before it shows);
        with one, from the cache as the apiserver serves such GETs: "0" is any recent state, a
        number at least that version."""
        if not resource_version:
            record = await self._record(kind, namespace, name)
        else:
            await self._fresh_enough(resource_version)
            record = self._cache.found(kind, namespace, name) or _not_found(kind, name)
        return await self._sealing.open(record)

    async def list_objects(
        self,
        kind: kinds.Kind,
        namespace: str | None,
        *,
        label_selector: str | None,
        field_selector: str | None,
        limit: int | None,
        token: str | None,
        resource_version: str | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """From the cache, opening only the page returned. Without a resourceVersion the list is
        consistent (every write finished before it shows); "0" is any recent state; a number is at
        least that version. A continue token goes on with the first page's snapshot."""
        match_labels, match_fields = _selectors(label_selector, field_selector)
        if token:
            ident, records, version, position = self._cache.resumed(token, kind, namespace)
        else:
            await self._fresh_enough(resource_version)
            version, ident, position = self._cache.version, None, 0
            records = [r for r in self._cache.listed(kind, namespace) if match_fields(_routing(r))]
        found: list[dict[str, Any]] = []
        while position < len(records) and not (limit and len(found) >= limit):
            obj = await self._sealing.open(records[position])
            position += 1
            if match_labels(_labels(obj)):
                found.append(obj)
        meta: dict[str, Any] = {"resourceVersion": str(version)}
        if limit and position < len(records):
            meta["continue"] = self._cache.token(
                ident or self._cache.snapshot(records, version, kind, namespace), position
            )
            meta["remainingItemCount"] = len(records) - position  # at most: labels select after opening
        return found, meta

    async def _fresh_enough(self, resource_version: str | None) -> None:
        if not resource_version:
            await self._cache.consistent()
        elif resource_version == "0":
            await self._cache.synced.wait()
        else:
            await self._cache.reached(_version(resource_version))

    async def watch(
        self,
        kind: kinds.Kind,
        namespace: str | None,
        *,
        resource_version: str | None,
        label_selector: str | None,
        field_selector: str | None,
        seconds: int,
        bookmarks: bool,
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events ({type, object}) from the cache, until ``seconds`` pass; objects leaving the
        selection come as DELETED. Without a version (or "0") the current objects come first, as
        ADDED; a version older than the cache's history gets 410 Gone (list again)."""
        match_labels, match_fields = _selectors(label_selector, field_selector)
        since = None if resource_version in (None, "", "0") else _version(resource_version)
        selected: set[str] = set()
        changes = self._cache.changes(kind, namespace, since=since)
        deadline = asyncio.get_running_loop().time() + seconds
        try:
            while True:
                # The deadline bounds each wait here, not the client's reading of what is yielded.
                left = deadline - asyncio.get_running_loop().time()
                try:
                    _, event_type, record = await asyncio.wait_for(anext(changes), max(left, 0))
                except (TimeoutError, StopAsyncIteration):
                    break
                obj = await self._sealing.open(record)
                key = obj["metadata"]["uid"]
                matches = match_fields(_routing(record)) and match_labels(_labels(obj))
                if event_type == "DELETED" or not matches:
                    if key in selected or (event_type == "DELETED" and matches):
                        selected.discard(key)
                        yield {"type": "DELETED", "object": obj}
                    continue
                yield {"type": "ADDED" if key not in selected else event_type, "object": obj}
                selected.add(key)
        except cache.Gone as gone:
            yield {"type": "ERROR", "object": ApiError(410, str(gone), reason="Expired").status()}
            return
        except ApiError as error:  # a version the cache does not reach in time
            yield {"type": "ERROR", "object": error.status()}
            return
        finally:
            await changes.aclose()
        if bookmarks:  # where to go on from, though nothing of this watch's changed
            version = str(self._cache.version)
            meta = {"resourceVersion": version}
            yield {
                "type": "BOOKMARK",
                "object": {"apiVersion": kinds.API_VERSION, "kind": kind.kind, "metadata": meta},
            }

    # ---- writes -----------------------------------------------------------------------------------

    async def create(self, kind: kinds.Kind, namespace: str, body: Any, options: WriteOptions) -> Written:
        obj, warnings = strategy.validated(kind, namespace, body, options.field_validation)
        name = strategy.named(kind, obj)
        stamped = fields.record_update(None, obj, options.manager)
        record = await self._sealing.seal(
            kind, namespace, stamped, object_id=str(uuid.uuid4()), generation=1, resource_version=None
        )
        try:
            stored = await self._store.create(namespace, record, dry_run=options.dry_run)
        except ApiException as error:
            raise _from_storage(error, kind, name) from None
        return Written(self._stored(stored, stamped), created=True, warnings=warnings)

    async def update(
        self, kind: kinds.Kind, namespace: str, name: str, *, body: Any, options: WriteOptions
    ) -> Written:
        obj, warnings = strategy.validated(kind, namespace, body, options.field_validation, name=name)
        live, record = await self._writable(kind, namespace, name)
        return await self._write_over(
            kind, namespace, live=live, record=record, obj=obj, options=options, warnings=warnings
        )

    async def patch(
        self,
        kind: kinds.Kind,
        namespace: str,
        name: str,
        *,
        body: bytes,
        content_type: str,
        options: WriteOptions,
    ) -> Written:
        if content_type == patches.APPLY:
            return await self._apply(kind, namespace, name, body, options)
        try:
            document = json.loads(body or b"null")
        except ValueError as error:
            raise ApiError(400, f"the patch is not JSON: {error}", kind=kind, name=name) from None
        live, record = await self._writable(kind, namespace, name)
        base = strategy.writable_part(live)
        try:
            if content_type == patches.JSON_PATCH:
                patched = patches.json_patch(base, document)
            elif content_type in (patches.MERGE, patches.STRATEGIC):
                patched = patches.merge_patch(base, document)
            else:
                raise ApiError(415, f"the patch type {content_type!r} is not supported", kind=kind, name=name)
        except patches.PatchError as error:
            raise strategy.field_error(kind, name, "patch", str(error)) from None
        obj, warnings = strategy.validated(kind, namespace, patched, options.field_validation, name=name)
        return await self._write_over(
            kind, namespace, live=live, record=record, obj=obj, options=options, warnings=warnings
        )

    async def delete(
        self,
        kind: kinds.Kind,
        namespace: str,
        name: str,
        *,
        uid: str | None,
        resource_version: str | None,
        dry_run: bool,
    ) -> dict[str, Any]:
        record = await self._record(kind, namespace, name)
        obj = await self._sealing.open(record)
        if uid and uid != record["spec"]["uid"]:
            raise ApiError(
                409,
                f"Precondition failed: UID in precondition: {uid}, "
                f"UID in object meta: {record['spec']['uid']}",
                kind=kind,
                name=name,
            )
        try:
            await self._store.delete(
                kind,
                namespace,
                name,
                uid=record["metadata"]["uid"],
                resource_version=resource_version,
                dry_run=dry_run,
            )
        except ApiException as error:
            raise _from_storage(error, kind, name) from None
        return obj

    # ---- the pieces -------------------------------------------------------------------------------

    async def _apply(
        self, kind: kinds.Kind, namespace: str, name: str, body: bytes, options: WriteOptions
    ) -> Written:
        try:
            config = yaml.safe_load(body or b"")
        except yaml.YAMLError as error:
            raise ApiError(
                400, f"the apply configuration is not YAML or JSON: {error}", kind=kind, name=name
            ) from None
        config, warnings = strategy.validated(kind, namespace, config, options.field_validation, name=name)
        record = await self._store.get(kind, namespace, name)
        if record is None:
            try:
                created = fields.apply(None, config, options.manager, force=options.force)
            except fields.ApplyConflict as conflict:  # pragma: no cover (nothing owns a new object)
                raise ApiError(409, str(conflict), kind=kind, name=name) from None
            strategy.validated(kind, namespace, created, options.field_validation, name=name)
            sealed = await self._sealing.seal(
                kind, namespace, created, object_id=str(uuid.uuid4()), generation=1, resource_version=None
            )
            try:
                stored = await self._store.create(namespace, sealed, dry_run=options.dry_run)
            except ApiException as error:
                raise _from_storage(error, kind, name) from None
            return Written(self._stored(stored, created), created=True, warnings=warnings)
        live = await self._sealing.open_for_write(record)
        try:
            applied = fields.apply(strategy.writable_part(live), config, options.manager, force=options.force)
        except fields.ApplyConflict as conflict:
            raise ApiError(409, str(conflict), kind=kind, name=name) from None
        strategy.validated(kind, namespace, applied, options.field_validation, name=name)
        return Written(
            await self._replace(
                kind, namespace, live=live, record=record, obj=applied, options=options, stamped=True
            ),
            warnings=warnings,
        )

    async def _write_over(
        self,
        kind: kinds.Kind,
        namespace: str,
        *,
        live: dict[str, Any],
        record: storage.SealedObject,
        obj: dict[str, Any],
        options: WriteOptions,
        warnings: list[str],
    ) -> Written:
        """An update or patch: conditional on the resourceVersion the client sent, if it sent one."""
        wanted_version = obj["metadata"].get("resourceVersion")
        if wanted_version and wanted_version != record["metadata"]["resourceVersion"]:
            raise _conflict(kind, live["metadata"]["name"])
        replaced = await self._replace(kind, namespace, live=live, record=record, obj=obj, options=options)
        return Written(replaced, warnings=warnings)

    async def _replace(
        self,
        kind: kinds.Kind,
        namespace: str,
        *,
        live: dict[str, Any],
        record: storage.SealedObject,
        obj: dict[str, Any],
        options: WriteOptions,
        stamped: bool = False,
    ) -> dict[str, Any]:
        strategy.check_update(kind, live, obj)
        if not stamped:
            obj = fields.record_update(strategy.writable_part(live), obj, options.manager)
        if strategy.content(obj) == strategy.content(live):
            return live  # a no-op (a GitOps re-apply): like the apiserver, write nothing, bump nothing
        generation = int(record["spec"]["generation"]) + (obj["spec"] != live["spec"])
        sealed = await self._sealing.seal(
            kind,
            namespace,
            obj,
            object_id=record["spec"]["uid"],
            generation=generation,
            resource_version=record["metadata"]["resourceVersion"],
        )
        sealed["metadata"]["name"] = record["metadata"]["name"]
        try:
            stored = await self._store.replace(namespace, sealed, dry_run=options.dry_run)
        except ApiException as error:
            raise _from_storage(error, kind, live["metadata"]["name"]) from None
        return self._stored(stored, obj)

    async def _record(self, kind: kinds.Kind, namespace: str, name: str) -> storage.SealedObject:
        try:
            record = await self._store.get(kind, namespace, name)
        except ApiException as error:
            raise _from_storage(error, kind, name) from None
        return record or _not_found(kind, name)

    async def _writable(
        self, kind: kinds.Kind, namespace: str, name: str
    ) -> tuple[dict[str, Any], storage.SealedObject]:
        record = await self._record(kind, namespace, name)
        return await self._sealing.open_for_write(record), record

    @staticmethod
    def _stored(stored: storage.SealedObject, obj: dict[str, Any]) -> dict[str, Any]:
        """The object as written: its content, and the metadata the SealedObject got (version, time)."""
        return codec.assemble(stored, obj)


# ---- helpers ---------------------------------------------------------------------------------------


def _selectors(label_selector: str | None, field_selector: str | None) -> tuple[selectors.Matcher, Any]:
    try:
        return selectors.labels(label_selector), selectors.fields(field_selector)
    except selectors.SelectorError as error:
        raise ApiError(400, str(error)) from None


def _not_found(kind: kinds.Kind, name: str) -> NoReturn:
    raise ApiError(404, f'{kind.plural}.{kinds.GROUP} "{name}" not found', kind=kind, name=name)


def _version(resource_version: str) -> int:
    try:
        return int(resource_version)
    except ValueError:
        raise ApiError(400, f"resourceVersion {resource_version!r} is not one this server gave") from None


def _routing(record: storage.SealedObject) -> dict[str, Any]:
    return {
        "metadata.name": record["spec"]["name"],
        "metadata.namespace": record["metadata"]["namespace"],
        "spec.accountName": record["spec"]["accountName"],
    }


def _labels(obj: dict[str, Any]) -> dict[str, str] | None:
    if "spec" not in obj:  # withheld: its labels are sealed
        return None
    return dict(obj["metadata"].get("labels") or {})


def _conflict(kind: kinds.Kind, name: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {kind.plural}.{kinds.GROUP} "{name}": '
        "the object has been modified; "
        "please apply your changes to the latest version and try again",
        kind=kind,
        name=name,
    )


def _from_storage(error: ApiException, kind: kinds.Kind, name: str | None) -> ApiError:
    """A storage error as the data object's: conflicts, absence, gone versions, limits."""
    if error.status == 409 and "already exists" in str(error.body):
        return ApiError(
            409,
            f'{kind.plural}.{kinds.GROUP} "{name}" already exists',
            reason="AlreadyExists",
            kind=kind,
            name=name,
        )
    if error.status == 409:
        return _conflict(kind, name or "")
    messages = {
        404: f'{kind.plural}.{kinds.GROUP} "{name}" not found',
        410: "too old resource version",
        413: f"the object cannot be stored: {error.reason}",  # etcd's own size limit
        422: f"the object cannot be stored: {error.reason}",
        429: "the storage is busy or starting; retry shortly",
    }
    if error.status in messages:
        return ApiError(error.status, messages[error.status], kind=kind, name=name)
    code = 503 if error.status >= 500 or error.status == 0 else error.status
    return ApiError(code, f"storage: {error.reason}", kind=kind, name=name)
