"""What every replica has watched, read without asking the API: one lister per kind.

Accounts come from the account store (``accountstore.py``), CustomerKeys and KeyVaults from Kopf's
indices (``handlers/indexes.py``); each is read as its model. The leader's work, the controllers and
the key resolution take one ``Listers`` instead of a closure per lookup, so what they read is typed
in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import accountstore, models
from .models import AccountKey

# A Kopf index: key -> a store of the values indexed under it (Kopf's type, read-only here).
Index = Mapping[Any, Any]


@dataclass(frozen=True)
class Listers:
    account_store: accountstore.AccountStore
    customer_key_index: Index  # (namespace, name) -> {"spec", "status", "generation"}
    key_vault_index: Index  # namespace -> (name, spec) pairs

    def account(self, namespace: str, name: str) -> models.AccountRecord | None:
        return self.account_store.get((namespace, name))

    def accounts(self) -> list[AccountKey]:
        return list(self.account_store)

    def customer_key(self, namespace: str, name: str) -> models.CustomerKeyRecord | None:
        """The CustomerKey's spec, status and generation."""
        store = self.customer_key_index.get((namespace, name))
        indexed = next(iter(store), None) if store is not None else None
        if indexed is None:
            return None
        spec = models.CustomerKeySpec.parse(indexed["spec"])
        return models.CustomerKeyRecord(spec, indexed["status"], indexed["generation"])

    def customer_keys(self) -> list[tuple[str, str]]:
        return list(self.customer_key_index)

    def key_vaults(self, namespace: str) -> dict[str, models.KeyVaultSpec]:
        """Every KeyVault of the namespace: name -> spec."""
        return {
            name: models.KeyVaultSpec.parse(spec) for name, spec in self.key_vault_index.get(namespace, ())
        }
