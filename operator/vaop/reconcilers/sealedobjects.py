"""SealedObject upkeep: an account's data stays owned by the account and in the current seal format.

The data API writes SealedObjects owned by their account object, in seal format 2. Two things
leave them otherwise: a restore (Velero drops ownerReferences, so the restored data would outlive
its account) and an upgrade (format 1, bound to the account's old uid). On the leader, this watches
SealedObjects without keeping them, notes the accounts that have such objects, and once the account
is Active (so its key opens) makes each of them right: owned by the account object, resealed in
format 2. Every write is a replace conditional on the resourceVersion read, so a crash or a
concurrent data API write leaves either the old object or the new one, both of which open.

An object sealed for another account ID than its account's is left as it is: it is another
account's data (an account deleted and made again under the same name), which the data API
withholds, and which only that account's key could open.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import labels, metrics, models
from ..crypto import objects
from ..dataapi import codec, kinds, storage
from ..dataapi import keys as account_keys
from ..listers import Listers
from ..models import AccountKey
from ..runtime import retry, watchcache, workqueue

logger = logging.getLogger(__name__)
RESTART_DELAY = 5.0


def needs_upkeep(record: storage.SealedObject, account: models.AccountRecord) -> bool:
    """Is this SealedObject the account's, and not yet as the data API writes it?"""
    spec, meta = record["spec"], record["metadata"]
    sealed_for = codec.bound_account_id(record)
    if sealed_for != (account.account_id or account.uid):
        return False  # another account's data (or the account not yet annotated): not ours to touch
    owners = [o.get("uid") for o in meta.get("ownerReferences") or ()]
    return spec.get("format") != objects.FORMAT_VERSION or owners != [account.uid]


class SealedObjectUpkeep:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        listers: Listers,
        account_key: Callable[[str, str], Awaitable[account_keys.Opened]],
    ) -> None:
        self._custom = client.CustomObjectsApi(api)
        self._account = listers.account
        self._account_key = account_key
        # Accounts with objects to make right: the objects by name, as last seen (None: seen before
        # their account existed, so not judged yet; read again when it is Active).
        self._pending: dict[AccountKey, dict[str, storage.SealedObject | None]] = {}
        self.queue: workqueue.WorkQueue[AccountKey] = workqueue.WorkQueue(
            self.process, workers=2, name="sealed-objects"
        )

    def account_active(self, key: AccountKey) -> None:
        """The account is Active now: its pending objects can be made right."""
        if key in self._pending:
            self.queue.add(key)

    # ---- finding work: a paged listing, then a watch; nothing kept but the accounts to visit ----

    async def run(self) -> None:
        listing = functools.partial(
            self._custom.list_cluster_custom_object, storage.GROUP, storage.VERSION, storage.PLURAL
        )
        await watchcache.reflect(
            listing,
            self,
            what="SealedObjects",
            restart_delay=RESTART_DELAY,
            label_selector=f"{storage.LABEL_KIND} in ({','.join(sorted(kinds.BY_KIND))})",  # data only
        )

    async def replace(self, listed: AsyncIterator[storage.SealedObject]) -> None:
        async for record in listed:
            self._seen(record)

    def changed(self, kind: str, obj: storage.SealedObject) -> None:
        self._seen(obj, deleted=kind == "DELETED")

    def _seen(self, record: storage.SealedObject, *, deleted: bool = False) -> None:
        key = (record["metadata"]["namespace"], str(record["spec"].get("accountName", "")))
        name = record["metadata"]["name"]
        account = self._account(*key)
        if deleted or (account is not None and not needs_upkeep(record, account)):
            pending = self._pending.get(key)
            if pending is not None:
                pending.pop(name, None)
                if not pending:
                    del self._pending[key]
            return
        # Restored before its account: not judged until the account exists (and is Active).
        self._pending.setdefault(key, {})[name] = record if account is not None else None
        if account is not None and account.state == models.AccountState.ACTIVE.value:
            self.queue.add(key)

    # ---- making an account's objects right ----------------------------------------------------------

    async def process(self, key: AccountKey) -> float | None:
        namespace, name = key
        account = self._account(namespace, name)
        if account is None or account.state != models.AccountState.ACTIVE.value:
            return None  # account_active() brings it back
        seen = self._pending.pop(key, {})
        made_right, reread = 0, None in seen.values()
        for record in seen.values():
            if record is None or not needs_upkeep(record, account):
                continue
            try:
                await self._make_right(record, account)
                made_right += 1
            except _Changed:
                reread = True  # written meanwhile (by the data API): judged again as it is now
        if reread:
            listed = await self._custom.list_namespaced_custom_object(
                storage.GROUP,
                storage.VERSION,
                namespace,
                storage.PLURAL,
                label_selector=f"{labels.SEALED_OBJECT_ACCOUNT}={name}",
            )
            for record in listed.get("items", []):
                if needs_upkeep(record, account):
                    await self._make_right(record, account)
                    made_right += 1
        if made_right:
            logger.info(
                "Account %s/%s: %d SealedObjects owned by it again, in seal format %d",
                namespace,
                name,
                made_right,
                objects.FORMAT_VERSION,
            )
        return None

    async def _make_right(self, record: storage.SealedObject, account: models.AccountRecord) -> None:
        namespace, name = record["metadata"]["namespace"], record["metadata"]["name"]
        updated: dict[str, Any] = record
        if record["spec"].get("format") != objects.FORMAT_VERSION:
            opened = await self._key(namespace, str(record["spec"]["accountName"]))
            try:
                updated = codec.resealed(record, account_key=opened.key)
            except objects.SealError as error:
                logger.warning("SealedObject %s/%s left in format 1: %s", namespace, name, error)
                return
            metrics.WRAPS.labels("format", "SealedObject", "ok").inc()
        owner = storage.owner(str(record["spec"]["accountName"]), account.uid)
        updated = {**updated, "metadata": {**updated["metadata"], "ownerReferences": [owner]}}
        try:
            await self._custom.replace_namespaced_custom_object(
                storage.GROUP, storage.VERSION, namespace, storage.PLURAL, name, updated
            )
        except ApiException as error:
            if error.status == 404:
                return  # deleted meanwhile
            if error.status == 409:
                raise _Changed from None
            raise

    async def _key(self, namespace: str, name: str) -> account_keys.Opened:
        try:
            return await self._account_key(namespace, name)
        except account_keys.Unavailable as unavailable:
            # Its key does not open now (locked meanwhile, a flaky vault): once Active, it is tried again.
            self._pending.setdefault((namespace, name), {})[""] = None
            raise retry.Transient(f"account key unavailable: {unavailable}") from None


class _Changed(Exception):
    """The SealedObject changed since it was read (409): read it again."""
