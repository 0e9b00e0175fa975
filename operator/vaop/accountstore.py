"""Every replica's view of the accounts, kept from Kopf's account watch.

Admission reads it (the KeyInaccessible lock), the data API (the account's uid and spec) and the
leader's reconciliations (spec and status) without asking the API. It is filled by the account
event handler, not by a Kopf index: while an operator with an index on a kind starts, Kopf holds
each listed object of that kind, whole, until the index holds every one of them, so a restart with
20,000 accounts held 20,000 parsed accounts at once (690 MiB). Here each listed account is reduced
to its record as its event is handled, and "every account listed is here" is the initial sync's
to tell (``handlers.indexes.InitialSync``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from . import conditions, labels, models
from .models import AccountKey

Subscriber = Callable[[str, str, "models.AccountRecord | None"], None]


def record_of(body: Mapping[str, Any]) -> models.AccountRecord:
    """What is kept of an account: its spec and status, and enough metadata to tell versions apart."""
    metadata = body.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    status = body.get("status") or {}
    ready = conditions.find(status.get("conditions"), conditions.READY) or {}
    return models.AccountRecord(
        str(metadata.get("uid", "")),
        str(status.get("state", "")),
        str(ready.get("reason", "")),
        shared_copy(body.get("spec") or {}),
        status=shared_copy(status),
        generation=metadata.get("generation"),
        resource_version=str(metadata.get("resourceVersion", "")),
        deleting=bool(metadata.get("deletionTimestamp")),
        account_id=str(annotations.get(labels.ANNOTATION_ACCOUNT_ID, "")),
        replace_key=str(annotations.get(labels.ANNOTATION_REPLACE_ACCOUNT_KEY, "")),
    )


def shared_copy(value: Any) -> Any:
    """A deep copy of parsed JSON whose strings are interned. Parsed one event at a time, every
    account has its own copy of each key and of the values that repeat from account to account
    (condition types and reasons, the messages of accounts on one key): 20,000 accounts' records
    took 110 MiB, and take 57 with their strings shared."""
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, Mapping):
        return {sys.intern(str(key)): shared_copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [shared_copy(item) for item in value]
    return value


class AccountStore(Mapping[AccountKey, models.AccountRecord]):
    """(namespace, name) -> the account's record, and the accounts on customer keys by namespace."""

    def __init__(self) -> None:
        self._records: dict[AccountKey, models.AccountRecord] = {}
        self._on_customer_keys: dict[str, set[str]] = {}
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        """``subscriber`` is told of every account event once the store holds it (None: deleted)."""
        self._subscribers.append(subscriber)

    def seen(self, event_type: str | None, namespace: str, name: str, body: Mapping[str, Any]) -> None:
        """An event of the account watch (``None``: listed); DELETED removes the account."""
        key = (namespace, name)
        record: models.AccountRecord | None = None
        if event_type == "DELETED":
            self._records.pop(key, None)
            self._forget_customer_key(namespace, name)
        else:
            self._records[key] = record = record_of(body)
            if (record.spec.get("encryption") or {}).get("keyRef"):
                self._on_customer_keys.setdefault(namespace, set()).add(name)
            else:
                self._forget_customer_key(namespace, name)
        for subscriber in self._subscribers:
            subscriber(namespace, name, record)

    def on_customer_keys(self, namespace: str) -> list[str]:
        """The accounts of ``namespace`` on a customer key: a key or vault change re-checks them."""
        return sorted(self._on_customer_keys.get(namespace, ()))

    def _forget_customer_key(self, namespace: str, name: str) -> None:
        names = self._on_customer_keys.get(namespace)
        if names is not None:
            names.discard(name)
            if not names:
                del self._on_customer_keys[namespace]

    def __getitem__(self, key: AccountKey) -> models.AccountRecord:
        return self._records[key]

    def __iter__(self) -> Iterator[AccountKey]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)
