"""The account key's part in the data API: an object is sealed for its account (its account ID, with
its account key) before it is stored, and opened with that key when read.

A read of an object whose account cannot be used comes back withheld (without its protected
content, with a Ready condition saying why); a write needs an Active account and is refused with
what to fix. An account applied together with its data (as GitOps tools and ``kubectl apply -f``
of a folder do) is waited for while it is provisioned.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .. import models
from ..crypto import objects
from . import codec, kinds, storage, strategy
from . import keys as account_keys
from .documents import ApiError

NEW_ACCOUNT_WAIT = 10.0


class Sealing:
    def __init__(self, keys: account_keys.AccountKeys) -> None:
        self._keys = keys

    async def seal(
        self,
        kind: kinds.Kind,
        namespace: str,
        obj: dict[str, Any],
        *,
        object_id: str,
        generation: int,
        resource_version: str | None,
    ) -> storage.SealedObject:
        account_name = obj["spec"]["accountName"]
        account = await self._account_for_write(kind, namespace, obj["metadata"]["name"], account_name)
        sealed = codec.seal(
            obj,
            kind=kind,
            namespace=namespace,
            object_id=object_id,
            account_id=account.account_id,
            account_key=account.key,
        )
        return storage.record_for(
            kind,
            namespace=namespace,
            name=obj["metadata"]["name"],
            object_id=object_id,
            account_name=account_name,
            account_id=account.account_id,
            account_uid=account.account_uid,
            generation=generation,
            sealed=sealed,
            resource_version=resource_version,
        )

    async def _account_for_write(
        self, kind: kinds.Kind, namespace: str, name: str, account: str
    ) -> account_keys.Opened:
        try:
            return await self._keys_of_new_account(namespace, account)
        except account_keys.Unavailable as unavailable:
            record = self._keys.account(namespace, account)
            if record is None:
                raise strategy.field_error(
                    kind,
                    name,
                    "spec.accountName",
                    f"VideoAnalyzerAccount {account} does not exist in namespace {namespace}: "
                    "create it first, "
                    "or name an account of this namespace",
                    reason="FieldValueNotFound",
                ) from None
            if record.state == models.AccountState.KEY_INACCESSIBLE.value:
                raise ApiError(
                    403,
                    f"VideoAnalyzerAccount {namespace}/{account} is KeyInaccessible "
                    f"(reason {record.reason}): "
                    "its data can be read (without its content), listed and deleted, but not changed until "
                    "access to "
                    "its customer key returns; see the account's KeyInaccessible condition for what to fix",
                    kind=kind,
                    name=name,
                ) from None
            raise ApiError(
                422 if record.state != models.AccountState.ACTIVE.value else 503,
                f"VideoAnalyzerAccount {namespace}/{account} is {record.state or 'not reconciled yet'}"
                f"{f' (reason {record.reason})' if record.reason else ''}: its data can be written once it "
                "is Active "
                f"({unavailable})",
                kind=kind,
                name=name,
            ) from None

    async def _keys_of_new_account(self, namespace: str, account: str) -> account_keys.Opened:
        """The account's key; an account still being provisioned (applied together with its data, as
        GitOps tools and `kubectl apply -f` of a folder do) is waited for, a few seconds at most."""
        deadline = time.monotonic() + NEW_ACCOUNT_WAIT
        while True:
            try:
                return await self._keys.key(namespace, account)
            except account_keys.Unavailable:
                record = self._keys.account(namespace, account)
                provisioning = record is not None and record.state in (
                    "",
                    models.AccountState.PROVISIONING.value,
                )
                if not provisioning or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.25)

    async def open_for_write(self, record: storage.SealedObject) -> dict[str, Any]:
        spec = record["spec"]
        kind = kinds.BY_KIND[spec["kind"]]
        account = await self._account_for_write(
            kind, record["metadata"]["namespace"], spec["name"], spec["accountName"]
        )
        if account.account_id != codec.bound_account_id(record):
            raise ApiError(
                409,
                f"{kind.kind} {spec['name']} is sealed for account ID {codec.bound_account_id(record)}, an "
                f"earlier account {spec['accountName']}; this one is account ID {account.account_id}",
                kind=kind,
                name=spec["name"],
            )
        try:
            return codec.open_record(record, account_key=account.key)
        except objects.SealError as error:
            raise ApiError(500, str(error), kind=kind, name=spec["name"]) from None

    async def open(self, record: storage.SealedObject) -> dict[str, Any]:
        spec = record["spec"]
        namespace = record["metadata"]["namespace"]
        try:
            account = await self._keys.key(namespace, spec["accountName"])
        except account_keys.Unavailable as unavailable:
            return codec.withheld(record, reason=unavailable.reason, message=str(unavailable))
        sealed_for = codec.bound_account_id(record)
        if account.account_id != sealed_for:
            return codec.withheld(
                record,
                reason="AccountNotFound",
                message=f"it is sealed for account ID {sealed_for}, and account {spec['accountName']} is now "
                f"account ID {account.account_id} (made anew, or given a new account key)",
            )
        try:
            return codec.assemble(record, codec.parsed(_unsealed(record, account)))
        except objects.SealError as error:
            return codec.withheld(record, reason="UnsealFailed", message=str(error))


def _unsealed(record: storage.SealedObject, account: account_keys.Opened) -> bytes:
    """The record's content, opened once per key for each version of the object."""
    ident = (record["spec"].get("uid", ""), record["metadata"].get("resourceVersion", ""))
    if not all(ident):  # not stored (a dry run's answer): nothing names this version
        return codec.unsealed(record, account_key=account.key)
    plaintext = account.contents.get(ident)
    if plaintext is None:
        plaintext = codec.unsealed(record, account_key=account.key)
        account.contents.put(ident, plaintext)
    return plaintext
