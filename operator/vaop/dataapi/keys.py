"""Account keys for the data API: unwrapped through the account's own chain, held briefly.

To open an account's data the plaintext account key is needed: its Secret's envelope is opened
with the infrastructure key and then by the key that wraps it, as the account's identity (the
system key, or the tenant's key in the tenant's vault, whose access control decides). The key is
held in memory for at most one check interval, and dropped at once when the account is seen to be
locked (KeyInaccessible), deleted or recreated, so revoking a customer key darkens the data within
that bound even for a replica that never hears of the revocation. What a key has opened is held
with it (``Opened.contents``) and goes with it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from kubernetes_asyncio import client

from .. import kubeclient, metrics, models, platformkeys, platformroot, wrapping
from ..crypto import envelope, objects
from ..domain import accounts as domain
from ..listers import Listers
from ..models import AccountKey
from ..providers.base import Bounded


class Unavailable(Exception):
    """The account's data cannot be opened now; ``reason`` is the account's (or why not)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


OPENED_PER_KEY = 20_000  # an account's objects opened and held with its key; past it, the least used go


def _contents() -> Bounded[tuple[str, str], bytes]:
    return Bounded(None, limit=OPENED_PER_KEY)


@dataclass(frozen=True)
class Opened:
    """An Active account's key, with what its data is bound to and owned by."""

    account_id: str  # the account ID its envelope and data are sealed for
    account_uid: str  # the account object's uid (ownerReferences of its data)
    key: objects.ObjectKeys  # the account key, made ready once for the objects it seals
    # What this key opened, by object (uid, resourceVersion): a read of an unchanged object
    # (lists; each of many watchers) skips the AES-GCM. Held here, it goes when the key goes (the
    # account locked, deleted, or its hold over): nothing opened outlives the key that opened it.
    contents: Bounded[tuple[str, str], bytes] = field(default_factory=_contents, compare=False, repr=False)


@dataclass
class _Held:
    opened: Opened
    until: float


class AccountKeys:
    def __init__(
        self,
        api: client.ApiClient,
        identities: kubeclient.Identities,
        *,
        namespace: str,
        listers: Listers,
        hold_seconds: float,
        root: platformroot.Root | None = None,
    ) -> None:
        self._root = root
        self._api = api
        self._core = client.CoreV1Api(api)
        self._identities = identities
        self._operator_namespace = namespace
        self._listers = listers
        self._contexts = wrapping.Contexts(listers)
        self._hold = hold_seconds
        self._held: dict[AccountKey, _Held] = {}
        self._locks: dict[AccountKey, asyncio.Lock] = {}
        metrics.CACHE_ENTRIES.labels("data-api-account-keys").set_function(lambda: len(self._held))
        metrics.CACHE_ENTRIES.labels("data-api-opened-objects").set_function(
            lambda: sum(len(held.opened.contents) for held in list(self._held.values()))
        )
        self._platform: platformkeys.PlatformKeys | None = None

    def account(self, namespace: str, name: str) -> models.AccountRecord | None:
        return self._listers.account(namespace, name)

    async def key(self, namespace: str, name: str) -> Opened:
        """The account key of an Active account; Unavailable otherwise."""
        record = self._listers.account(namespace, name)
        if record is None:
            self.drop(namespace, name)
            raise Unavailable("AccountNotFound", f"VideoAnalyzerAccount {namespace}/{name} does not exist")
        if record.state != models.AccountState.ACTIVE.value:
            self.drop(namespace, name)
            raise Unavailable(
                record.reason or record.state or "Provisioning",
                f"VideoAnalyzerAccount {namespace}/{name} is {record.state or 'not ready yet'}"
                + (f" (reason {record.reason})" if record.reason else ""),
            )
        held = self._held.get((namespace, name))
        if held is not None and _same_account(held, record) and time.monotonic() < held.until:
            return held.opened
        lock = self._locks.setdefault((namespace, name), asyncio.Lock())
        async with lock:
            held = self._held.get((namespace, name))
            if held is None or not _same_account(held, record) or time.monotonic() >= held.until:
                held = _Held(await self._unwrap(namespace, name, record), time.monotonic() + self._hold)
                self._held[(namespace, name)] = held
        return held.opened

    def drop(self, namespace: str, name: str) -> None:
        self._held.pop((namespace, name), None)
        lock = self._locks.get((namespace, name))
        if lock is not None and not lock.locked():
            del self._locks[(namespace, name)]

    def account_changed(self, namespace: str, name: str, record: models.AccountRecord | None) -> None:
        """Called on every account event: a locked, deleted or recreated account's key goes at once."""
        held = self._held.get((namespace, name))
        if held is None:
            return
        if (
            record is None
            or not _same_account(held, record)
            or record.state != models.AccountState.ACTIVE.value
        ):
            self.drop(namespace, name)

    def purge(self) -> None:
        """Forget keys held past their time (called periodically, so none lingers unused)."""
        now = time.monotonic()
        for namespace, name in [k for k, held in self._held.items() if now >= held.until]:
            self.drop(namespace, name)

    async def _unwrap(self, namespace: str, name: str, record: models.AccountRecord) -> Opened:
        platform = await self._platform_keys()
        secret_name = models.account_key_secret_name(name)
        secret = await kubeclient.read_secret_or_none(self._core, secret_name, namespace)
        if secret is None:
            raise Unavailable("AccountKeyLost", f"the account key Secret of {namespace}/{name} is missing")
        context = self._contexts.context(namespace, name, models.AccountSpec.parse(record.spec))
        try:
            sealed = domain.envelope_in(secret.data)
            # The leader's rule for whose key this is: the annotation's ID, or this very account
            # object's Secret (the annotation may not have reached this replica's watch yet).
            refused = domain.not_held(
                namespace=namespace,
                name=name,
                account_id=record.account_id,
                account_uid=record.uid,
                held=sealed.account,
                secret_owners=tuple(o.uid for o in secret.metadata.owner_references or ()),
                secret_name=secret_name,
            )
            if refused is not None:
                ready = refused.conditions[0]
                raise Unavailable(ready.reason, ready.message)
            if sealed.outer_key_version not in platform.infrastructure:
                self._platform = None  # rotated since they were read: read them again
                platform = await self._platform_keys()
            async with wrapping.Session(platform, self._identities) as session:
                key = await session.open(context, sealed.account, sealed)
            return Opened(sealed.account.id, record.uid, objects.ObjectKeys(key))
        except wrapping.KeyProblem as problem:
            raise Unavailable(
                problem.reason, f"the account key of {namespace}/{name} does not open: {problem}"
            ) from None
        except envelope.OuterKeyMismatch as error:
            raise Unavailable(
                "PlatformKeyMissing", f"the account key of {namespace}/{name} does not open: {error}"
            ) from None
        except (envelope.EnvelopeError, platformroot.PlatformKeyMissing) as error:
            raise Unavailable(
                "UnwrapFailed", f"the account key of {namespace}/{name} does not open: {error}"
            ) from None

    async def _platform_keys(self) -> platformkeys.PlatformKeys:
        if self._platform is None:
            try:
                self._platform = await platformkeys.load(self._api, self._operator_namespace, self._root)
            except platformroot.PlatformKeyMissing as error:
                raise Unavailable("PlatformKeyMissing", str(error)) from None
        return self._platform


def _same_account(held: _Held, record: models.AccountRecord) -> bool:
    """The held key is this account's: the same object, with the same account ID (an account made
    anew, or given a new key, drops the old one)."""
    return held.opened.account_uid == record.uid and record.account_id in ("", held.opened.account_id)
