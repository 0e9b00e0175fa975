"""The accounts' default identities, on the leader: the ServiceAccount ``<account>-identity`` an
account on a customer key acts as when its spec names none, made once and owned by the account."""

from __future__ import annotations

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import labels, models
from ..models import AccountKey
from ..runtime import watchcache
from . import accountwrites, ledger


class DefaultIdentities:
    def __init__(self, api: client.ApiClient, ledger: ledger.Ledger) -> None:
        self._core = client.CoreV1Api(api)
        self.ledger = ledger

    async def ensure(self, key: AccountKey, uid: str, spec: models.AccountSpec, entry: ledger.Entry) -> None:
        """Make the default identity ``<account>-identity`` once the account uses a customer key (a
        system key is used as the operator, so a SystemKey account needs none); a named one is the
        tenant's to make."""
        if (
            spec.encryption.type is not models.EncryptionType.CUSTOMER_KEY
            or spec.encryption.identity.service_account_name
            or entry.identity_made
        ):
            return
        namespace, name = key
        account = client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(
                name=models.identity_name(name, spec),
                labels={**labels.MANAGED, labels.ACCOUNT: name},
                owner_references=[accountwrites.owner_reference(name, uid)],
            )
        )
        try:
            await self._core.create_namespaced_service_account(namespace, account)
        except ApiException as error:
            if error.status != 409:
                raise
        entry.identity_made = True

    async def find(self) -> None:
        """Note the default identities that exist already, so a new leader does not try to make them
        again (one paged listing instead of a refused create per account)."""
        listing = watchcache.pages(
            self._core.list_service_account_for_all_namespaces, label_selector=labels.ACCOUNT
        )
        async for page in listing:
            for found in page.items:
                account = (found.metadata.labels or {}).get(labels.ACCOUNT)
                spec_name = f"{account}-identity"
                if account and found.metadata.name == spec_name:
                    self.ledger[(found.metadata.namespace, account)].identity_made = True
