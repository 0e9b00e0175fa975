"""Which key wraps an account key, and the providers to reach it, resolved for one reconciliation.

``Session.target`` answers "which exact key version should wrap this account now?" (system key, or
the CustomerKey -> KeyVault -> provider chain, checked for region, soft-delete, purge protection, key
type and size), acting as the account's identity for customer keys. ``Session.opener`` finds the
provider that can open an existing envelope. Sessions of a few seconds share their providers
through a ``providerpool.ProviderPool``, so a rotation of many accounts on one key reaches the vault's listing
(or login) once, not once per account.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from . import conditions, kubeclient, models, platformkeys, providerpool, providers
from .crypto import envelope
from .listers import Listers
from .providers import base


class KeyProblem(Exception):
    """The wanted key cannot be used. ``definitive`` is False for transient vault failures."""

    def __init__(self, reason: str, message: str, *, definitive: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.definitive = definitive

    @classmethod
    def from_provider(cls, error: base.ProviderError) -> KeyProblem:
        return cls(error.reason, str(error), definitive=not isinstance(error, base.TransientError))


# Reasons that mean "the key that should wrap is unusable or gone"; the rest are configuration problems.
INACCESSIBLE_REASONS = frozenset(
    {
        conditions.Reason.KEY_NOT_FOUND,
        conditions.Reason.KEY_VERSION_NOT_FOUND,
        conditions.Reason.ACCESS_DENIED,
        conditions.Reason.KEY_DISABLED,
        conditions.Reason.UNWRAP_FAILED,
        conditions.Reason.KEY_REF_NOT_FOUND,
        conditions.Reason.VAULT_NOT_FOUND,
        conditions.Reason.IDENTITY_NOT_FOUND,
    }
)


@dataclass(frozen=True)
class WrappingKey:
    """An exact key version and the provider that reaches it."""

    ref: envelope.InnerKeyRef  # algorithm left empty until a wrap fixes it
    provider: base.KeyProvider
    version: base.KeyVersion

    def same_key_other_version(self, other: envelope.InnerKeyRef) -> bool:
        """A rotation: the same key, as the same identity, at another version."""
        mine = (self.ref.type, self.ref.provider, self.ref.key_vault, self.ref.key_name, self.ref.identity)
        theirs = (other.type, other.provider, other.key_vault, other.key_name, other.identity)
        return mine == theirs and self.ref.key_version != other.key_version

    def same_key(self, other: envelope.InnerKeyRef) -> bool:
        """Wrapped by this very key version, as this identity: nothing to do. A move to another
        identity re-wraps, which proves the new identity can use the key before the old one goes."""
        mine = (self.ref.type, self.ref.provider, self.ref.key_vault, self.ref.key_name, self.ref.key_version)
        theirs = (other.type, other.provider, other.key_vault, other.key_name, other.key_version)
        return mine == theirs and self.ref.identity == other.identity


@dataclass(frozen=True)
class AccountContext:
    """What the session needs to know of an account, its CustomerKey and that key's KeyVault."""

    namespace: str
    name: str
    spec: models.AccountSpec
    customer_key: models.CustomerKeySpec | None  # None: absent from the namespace (or not referenced)
    vaults: dict[str, models.KeyVaultSpec]  # KeyVaults of the namespace, by name

    @property
    def identity(self) -> kubeclient.ServiceAccountRef:
        return kubeclient.ServiceAccountRef(self.namespace, models.identity_name(self.name, self.spec))


class Contexts:
    """Account contexts from the replica's indices of CustomerKeys and KeyVaults (no API calls)."""

    def __init__(self, listers: Listers) -> None:
        self._listers = listers

    def context(self, namespace: str, name: str, spec: models.AccountSpec) -> AccountContext:
        key_ref = spec.encryption.key_ref
        customer_key = self._listers.customer_key(namespace, key_ref.name) if key_ref else None
        return AccountContext(
            namespace=namespace,
            name=name,
            spec=spec,
            customer_key=customer_key.spec if customer_key is not None else None,
            vaults=self._listers.key_vaults(namespace),
        )


T = TypeVar("T")


class Session:
    def __init__(
        self,
        platform: platformkeys.PlatformKeys,
        identities: kubeclient.Identities,
        *,
        pool: providerpool.ProviderPool | None = None,
        fresh: bool = False,
    ) -> None:
        self._platform = platform
        self._identities = identities
        self._pool = pool
        self._fresh = fresh  # connect anew even if the pool has a provider (and leave it there)
        self._providers: dict[tuple[str, kubeclient.ServiceAccountRef], base.KeyProvider] = {}
        self._pooled: dict[tuple[str, kubeclient.ServiceAccountRef], providerpool.PoolKey] = {}
        self._dropped: list[base.KeyProvider] = []  # replaced after a token was refused

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Identity clients belong to ``Identities`` (reused across sessions), pooled providers to the pool.
        for place, provider in self._providers.items():
            if place in self._pooled and self._pool is not None:
                self._pool.release(provider)
            else:
                await providerpool.close_quietly(provider)
        for provider in self._dropped:
            await providerpool.close_quietly(provider)

    def _evict_if_unanswered(
        self, vault_name: str, identity: kubeclient.ServiceAccountRef, problem: KeyProblem
    ) -> None:
        """A vault that did not answer usefully: later sessions must ask it again (and connect anew).
        A definitive answer (access denied, key gone) stays with the pooled provider for its few
        seconds, as a good answer does: the accounts locked by one revocation share it."""
        if problem.definitive:
            return
        key = self._pooled.get((vault_name, identity))
        if key is not None and self._pool is not None:
            self._pool.evict(key)

    async def target(self, account: AccountContext) -> WrappingKey:
        """The key version that should wrap this account's key now; raises KeyProblem if unusable."""
        spec = account.spec
        if spec.encryption.type == models.EncryptionType.SYSTEM_KEY:
            return await self._system_key()
        key_ref = spec.encryption.key_ref
        assert key_ref is not None  # the CRD's CEL rule requires it
        key = account.customer_key
        if key is None:
            raise KeyProblem(
                conditions.Reason.KEY_REF_NOT_FOUND,
                f"CustomerKey {key_ref.name} does not exist in namespace {account.namespace}",
            )
        vault = account.vaults.get(key.vault_ref.name)
        if vault is None:
            raise KeyProblem(
                conditions.Reason.VAULT_NOT_FOUND,
                f"KeyVault {key.vault_ref.name} (of CustomerKey {key_ref.name}) does not exist "
                f"in namespace {account.namespace}",
            )
        if vault.region != spec.region:
            raise KeyProblem(
                conditions.Reason.REGION_MISMATCH,
                f"KeyVault {key.vault_ref.name} is in region {vault.region} but the account is in "
                f"{spec.region}; use a vault in {spec.region}",
            )

        async def usable_version(provider: base.KeyProvider) -> base.KeyVersion:
            properties = await provider.protection(key.key_name)
            if not properties.soft_delete:
                raise KeyProblem(
                    conditions.Reason.SOFT_DELETE_DISABLED,
                    f"KeyVault {key.vault_ref.name} does not have soft-delete enabled; enable it so a "
                    "deleted key stays recoverable",
                )
            if not properties.purge_protection:
                raise KeyProblem(
                    conditions.Reason.PURGE_PROTECTION_DISABLED,
                    f"KeyVault {key.vault_ref.name} does not have purge protection enabled; enable it so "
                    "a deleted key cannot be purged before its retention ends",
                )
            return await provider.resolve(key.key_name, key.pinned_version)

        provider, version = await self._as_identity(
            account, key.vault_ref.name, vault, account.identity, usable_version
        )
        ref = envelope.InnerKeyRef(
            type=models.EncryptionType.CUSTOMER_KEY.value,
            provider=provider.name,
            key_vault=key.vault_ref.name,
            key_name=key.key_name,
            key_version=version.version,
            algorithm="",
            identity=account.identity.name,
        )
        return WrappingKey(ref, provider, version)

    async def open(
        self, account: AccountContext, identity: envelope.AccountIdentity, sealed: envelope.Envelope
    ) -> bytes:
        """Both layers off: the plaintext account key (kept in memory only, never logged). The inner
        layer is opened by whichever key wrapped it, as the identity it was wrapped as."""
        outer_key = self._platform.infrastructure_key(sealed.outer_key_version)
        inner_wrapped = envelope.unseal(sealed, account=identity, outer_key=outer_key)
        inner = sealed.inner

        async def unwrap(provider: base.KeyProvider) -> bytes:
            return await provider.unwrap(
                inner.key_name, inner.key_version, inner_wrapped, algorithm=inner.algorithm
            )

        if inner.type == models.EncryptionType.SYSTEM_KEY.value:
            try:
                return await unwrap(self._platform.system_provider(inner.provider))
            except base.ProviderError as error:
                raise KeyProblem.from_provider(error) from None
        # Opened as the identity it was wrapped as: an account moved off a key, or onto another
        # identity, is opened as the ServiceAccount its key was wrapped as, whatever its spec names now.
        vault = account.vaults.get(inner.key_vault)
        if vault is None:
            raise KeyProblem(
                conditions.Reason.VAULT_NOT_FOUND,
                f"KeyVault {inner.key_vault}, whose key wraps the account key, does not exist in namespace "
                f"{account.namespace}; restore it to open the account key",
            )
        _, account_key = await self._as_identity(
            account, inner.key_vault, vault, wrapped_as(account, inner), unwrap
        )
        return account_key

    async def _as_identity(
        self,
        account: AccountContext,
        vault_name: str,
        vault: models.KeyVaultSpec,
        identity: kubeclient.ServiceAccountRef,
        call: Callable[[base.KeyProvider], Awaitable[T]],
    ) -> tuple[base.KeyProvider, T]:
        """``call`` on the vault's provider as ``identity``; vault errors become KeyProblems. A token the
        vault rejects as a token (its ServiceAccount deleted, or made again under the same name, as a
        restored namespace does), or access denied with a token held for a while, is tried once more
        with a new token: the refusal would otherwise lock the identity's accounts until the token
        renews, minutes later."""
        for attempt in (1, 2):
            provider = await self._customer_provider(account, vault_name, vault, identity)
            used = self._identities.oldest_token(identity)  # the token the provider acts with, or older
            try:
                return provider, await call(provider)
            except base.ProviderError as error:
                held = used is not None and time.monotonic() - used > kubeclient.FRESH_TOKEN_SECONDS
                rejected = isinstance(error, base.CredentialsRejected)
                if (
                    attempt == 1
                    and used is not None
                    and (rejected or (held and isinstance(error, base.AccessDenied)))
                ):
                    self._identities.forget(identity, issued_up_to=used)
                    self._forget_provider(vault_name, identity)
                    continue
                problem = KeyProblem.from_provider(error)
                self._evict_if_unanswered(vault_name, identity, problem)
                raise problem from None
            except KeyProblem as problem:
                self._evict_if_unanswered(vault_name, identity, problem)
                raise
        raise AssertionError("unreachable")

    def _forget_provider(self, vault_name: str, identity: kubeclient.ServiceAccountRef) -> None:
        provider = self._providers.pop((vault_name, identity), None)
        key = self._pooled.pop((vault_name, identity), None)
        if key is not None and self._pool is not None:
            self._pool.evict(key)
            if provider is not None:
                self._pool.release(provider)
        elif provider is not None:
            self._dropped.append(provider)  # closed with the session

    async def _system_key(self) -> WrappingKey:
        root = self._platform.root
        try:
            version = await root.provider.resolve(root.key_name, None)
        except base.ProviderError as error:
            raise KeyProblem(conditions.Reason.PLATFORM_KEY_MISSING, f"system key: {error}") from None
        ref = envelope.InnerKeyRef(
            type=models.EncryptionType.SYSTEM_KEY.value,
            provider=root.kind,
            key_vault="",
            key_name=root.key_name,
            key_version=version.version,
            algorithm="",
        )
        return WrappingKey(ref, root.provider, version)

    async def _customer_provider(
        self,
        account: AccountContext,
        vault_name: str,
        vault: models.KeyVaultSpec,
        identity: kubeclient.ServiceAccountRef,
    ) -> base.KeyProvider:
        cached = self._providers.get((vault_name, identity))
        if cached is not None:
            return cached
        pool_key: providerpool.PoolKey = (account.namespace, vault_name, identity, vault.model_dump_json())
        pooled = self._pool.get(pool_key) if self._pool is not None and not self._fresh else None
        if pooled is not None:
            self._providers[(vault_name, identity)] = pooled
            self._pooled[(vault_name, identity)] = pool_key
            return pooled
        try:
            api = await self._identities.client_for(identity)
        except kubeclient.IdentityError as error:
            if error.transient:
                raise KeyProblem(conditions.Reason.VAULT_UNREACHABLE, str(error), definitive=False) from None
            reason = (
                conditions.Reason.IDENTITY_NOT_FOUND if error.not_found else conditions.Reason.ACCESS_DENIED
            )
            raise KeyProblem(reason, str(error)) from None
        try:
            provider = await providers.connect(
                vault,
                namespace=account.namespace,
                name=vault_name,
                identity=providers.Identity(
                    str(identity), api, self._token_for(identity), self._annotations_of(identity)
                ),
            )
        except base.ProviderError as error:
            raise KeyProblem.from_provider(error) from None
        self._providers[(vault_name, identity)] = provider
        if self._pool is not None:
            self._pool.put(pool_key, provider)
            self._pooled[(vault_name, identity)] = pool_key
        return provider

    def _annotations_of(
        self, identity: kubeclient.ServiceAccountRef
    ) -> Callable[[], Awaitable[Mapping[str, str]]]:
        async def annotations() -> Mapping[str, str]:
            try:
                return await self._identities.annotations(identity)
            except kubeclient.IdentityError as error:
                raise _as_provider_error(error) from None

        return annotations

    def _token_for(self, identity: kubeclient.ServiceAccountRef) -> Callable[[str], Awaitable[str]]:
        async def token(audience: str) -> str:
            try:
                return await self._identities.token(identity, audiences=[audience])
            except kubeclient.IdentityError as error:
                raise _as_provider_error(error) from None

        return token


def wrapped_as(account: AccountContext, inner: envelope.InnerKeyRef) -> kubeclient.ServiceAccountRef:
    """The identity an envelope's customer key was wrapped as (format 1 did not record it: then the
    account's identity now)."""
    if inner.identity:
        return kubeclient.ServiceAccountRef(account.namespace, inner.identity)
    return account.identity


def _as_provider_error(error: kubeclient.IdentityError) -> base.ProviderError:
    """An identity problem met while a provider connects, as the provider error it amounts to."""
    return base.TransientError(str(error)) if error.transient else base.AccessDenied(str(error))
