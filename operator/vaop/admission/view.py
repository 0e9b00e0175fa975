"""The admission view over the operator's live state (Kopf's indices and the account store), which
every replica keeps."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import kopf

from .. import accountstore, models, providers
from ..domain import admission


class _States(Mapping[tuple[str, str], tuple[str, str]]):
    """The account store seen as (namespace, name) -> (state, Ready reason)."""

    def __init__(self, accounts: accountstore.AccountStore) -> None:
        self._accounts = accounts

    def __getitem__(self, key: tuple[str, str]) -> tuple[str, str]:
        record = self._accounts[key]
        return record.state, record.reason

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._accounts)

    def __len__(self) -> int:
        return len(self._accounts)


class _Facts(Mapping[tuple[str, str], admission.AccountFacts]):
    """The account store seen as (namespace, name) -> uid, account ID and whether it is Active."""

    def __init__(self, accounts: accountstore.AccountStore) -> None:
        self._accounts = accounts

    def __getitem__(self, key: tuple[str, str]) -> admission.AccountFacts:
        record = self._accounts[key]
        active = record.state == models.AccountState.ACTIVE.value
        return admission.AccountFacts(record.uid, record.account_id, active)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._accounts)

    def __len__(self) -> int:
        return len(self._accounts)


class _First(Mapping[Any, Any]):
    """An index whose stores hold one value each, seen as a plain mapping."""

    def __init__(self, index: kopf.Index[Any, Any], *, as_dict: bool = False) -> None:
        self._index = index
        self._as_dict = as_dict

    def __getitem__(self, key: Any) -> Any:
        store = self._index[key]
        return dict(store) if self._as_dict else next(iter(store))

    def __iter__(self) -> Iterator[Any]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


def make(
    *,
    accounts: accountstore.AccountStore,
    customer_keys: kopf.Index[Any, Any],
    key_vaults: kopf.Index[Any, Any],
    operator_username: str,
    restore_identities: frozenset[str],
    infrastructure_keys: Mapping[str, bytes] | None,
) -> admission.View:
    return admission.View(
        account_state=_States(accounts),
        accounts=_Facts(accounts),
        customer_keys=_First(customer_keys),
        vaults=_First(key_vaults, as_dict=True),
        operator_username=operator_username,
        system_deleters=admission.SYSTEM_DELETERS,
        restore_identities=restore_identities,
        infrastructure_keys=infrastructure_keys,
        vault_refusal=providers.refusal,
    )
