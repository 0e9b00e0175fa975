"""The key-vault provider interface, and the errors every provider raises.

A provider is one vault seen through one identity: every call runs with the account's credentials,
so the vault's own access control decides. Errors split like httpx's: callers catch
``DefinitiveError`` (the key is unusable until someone acts: lock the account at once) apart from
``TransientError`` (retry; lock only after a grace period).
"""

from __future__ import annotations

import abc
import asyncio
import copy
import datetime
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .. import conditions, metrics
from ..crypto import rsa


class ProviderError(Exception):
    """A vault operation failed. ``reason`` is a stable code from conditions.Reason."""

    reason: str = conditions.Reason.UNWRAP_FAILED

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class DefinitiveError(ProviderError):
    """The vault answered, and the answer is no: retrying will not help until someone acts."""


class TransientError(ProviderError):
    """The vault did not answer usefully (timeout, 5xx, refused connection): retry."""

    reason = conditions.Reason.VAULT_UNREACHABLE


class KeyNotFound(DefinitiveError):
    reason = conditions.Reason.KEY_NOT_FOUND


class KeyVersionNotFound(DefinitiveError):
    reason = conditions.Reason.KEY_VERSION_NOT_FOUND


class VaultNotFound(DefinitiveError):
    reason = conditions.Reason.VAULT_NOT_FOUND


class AccessDenied(DefinitiveError):
    reason = conditions.Reason.ACCESS_DENIED


class CredentialsRejected(AccessDenied):
    """The identity's token itself was refused (not the identity's rights): it names a ServiceAccount
    that was deleted (and perhaps made again under the same name, as a restored namespace does).
    A new token may be accepted; asked once more with one, a refusal stands as AccessDenied."""


class KeyDisabled(DefinitiveError):
    reason = conditions.Reason.KEY_DISABLED


class KeyUnsupported(DefinitiveError):
    reason = conditions.Reason.KEY_UNSUPPORTED


class UnwrapFailed(DefinitiveError):
    reason = conditions.Reason.UNWRAP_FAILED


@dataclass(frozen=True)
class Refusal:
    """Why a vault cannot be used, told before any identity acts (its spec, or a probe without
    credentials): a reason code from conditions.Reason and a message for a status."""

    reason: str
    message: str

    @classmethod
    def of(cls, error: ProviderError) -> Refusal:
        return cls(error.reason, str(error))


_FOREIGN_LIMIT = 120


def foreign(text: object) -> str:
    """A short, sanitised part of what a vault answered, fit to quote in a status a tenant reads: one
    line of printable characters, at most 120 of them. A vault's answer is the tenant's (or, at a
    wrong address, anybody's) text; it must not fill a status or carry control characters."""
    line = " ".join("".join(c if c.isprintable() else " " for c in str(text or "")).split())
    if not line:
        return "no detail"
    return line if len(line) <= _FOREIGN_LIMIT else line[: _FOREIGN_LIMIT - 1].rstrip() + "…"


@dataclass(frozen=True)
class KeyVersion:
    """One version of a key as the vault reports it."""

    name: str
    version: str
    facts: rsa.KeyFacts
    enabled: bool  # opens what it wrapped (an expired version still does, as in Azure Key Vault)
    why_disabled: str = ""  # what the vault says beyond "disabled" (a not-before date, say), if anything
    expires_on: datetime.datetime | None = None  # after it, the version wraps nothing new

    def expired(self, now: datetime.datetime | None = None) -> bool:
        return self.expires_on is not None and self.expires_on <= (now or datetime.datetime.now(datetime.UTC))

    def expiry(self) -> str:
        """Its expiry date for messages, e.g. "2026-12-31 23:59 UTC"."""
        return f"{self.expires_on:%Y-%m-%d %H:%M} UTC" if self.expires_on is not None else "never"


@dataclass(frozen=True)
class VaultProperties:
    soft_delete: bool
    purge_protection: bool


@dataclass(frozen=True)
class Wrapped:
    ciphertext: bytes
    algorithm: str
    version: str


class KeyProvider(abc.ABC):
    """One vault, acting as one identity. Implementations live one per module in this package."""

    name: str

    @abc.abstractmethod
    async def protection(self, key_name: str) -> VaultProperties:
        """Soft-delete and purge protection of this key, as the vault reports (or its owner declares) them."""

    @abc.abstractmethod
    async def versions(self, key_name: str) -> list[KeyVersion]:
        """Every version of the key, oldest first. Raises KeyNotFound when there is none."""

    async def resolve(self, key_name: str, version: str | None) -> KeyVersion:
        """The pinned version, or the latest enabled one that has not expired (if every enabled version
        has, the latest: it still opens what it wrapped, and wraps nothing new); raises when unusable."""
        versions = await self.versions(key_name)
        if version:
            found = next((v for v in versions if v.version == version), None)
            if found is None:
                raise KeyVersionNotFound(f"key {key_name!r} has no version {version!r}")
        else:
            enabled = [v for v in versions if v.enabled]
            enabled = [v for v in enabled if not v.expired()] or enabled
            if not enabled:
                why = (
                    f" (the newest {versions[-1].why_disabled})"
                    if versions and versions[-1].why_disabled
                    else ""
                )
                raise KeyDisabled(f"every version of key {key_name!r} is disabled{why}")
            found = enabled[-1]
        if not found.enabled:
            why = f" ({found.why_disabled})" if found.why_disabled else ""
            raise KeyDisabled(f"version {found.version} of key {key_name!r} is disabled{why}")
        problem = rsa.unsupported_reason(found.facts)
        if problem:
            raise KeyUnsupported(f"key {key_name!r} version {found.version} cannot be used: {problem}")
        return found

    @abc.abstractmethod
    async def wrap(self, key: KeyVersion, plaintext: bytes) -> Wrapped:
        """Encrypt the account key with this exact key version."""

    @abc.abstractmethod
    async def unwrap(self, key_name: str, version: str, ciphertext: bytes, *, algorithm: str) -> bytes:
        """Decrypt an account key wrapped by ``wrap`` (with the algorithm recorded in the envelope)."""

    async def rewrap(self, key: KeyVersion, ciphertext: bytes) -> Wrapped | None:
        """Re-encrypt ``ciphertext`` (made by another version of the same key) to ``key`` inside the
        vault, so no plaintext leaves it. None: this provider cannot; the caller unwraps and wraps."""
        return None

    async def close(self) -> None:  # noqa: B027 (optional hook, not abstract)
        """Release connections; providers without any need not override."""


# Closers of what providers keep across reconciliations (connections, sessions), run at shutdown.
_kept: set[Callable[[], Awaitable[None]]] = set()


def close_at_shutdown(closer: Callable[[], Awaitable[None]]) -> None:
    _kept.add(closer)


async def shutdown() -> None:
    """Close every connection that providers keep across reconciliations."""
    for closer in list(_kept):
        await closer()


T = TypeVar("T")


class RecentReads(Generic[T]):
    """Vault reads shared for a moment between reconciliations: a rotation re-wraps many accounts at
    once, and each would otherwise read the same key. Keys must name the identity (or its vault token)
    so that one identity's read never answers for another's.

    A read under way is joined, not repeated. A refusal (``DefinitiveError``: access denied, key gone)
    is an answer and is shared like one, so 10,000 accounts locked by one revoked grant ask the vault
    once, not 10,000 times. A ``TransientError`` is not remembered: one flaky answer must not mark
    every account of the key as degraded; while the vault is slow, the reads in flight are joined."""

    def __init__(self, *, seconds: float = 2.0, name: str | None = None) -> None:
        self._seconds = seconds  # how stale a shared read may be: far below the check interval
        self._reads: dict[Hashable, _Read[T]] = {}
        self._swept_at = time.monotonic()
        if name is not None:  # one that lives as long as the process: its size is a metric
            metrics.CACHE_ENTRIES.labels(name).set_function(lambda: len(self._reads))

    async def get(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        if now >= self._swept_at + self._seconds:
            self._sweep(now)
        found = self._reads.get(key)
        if found is None or found.stale(now, self._seconds):
            found = _Read(asyncio.ensure_future(read()))
            self._reads[key] = found
            found.task.add_done_callback(lambda _: self._settled(key, found))
        try:
            if found.task.done():
                return found.task.result()
            # Shielded: a reconciliation that is cancelled leaves the read to the others waiting on it.
            return await asyncio.shield(found.task)
        except DefinitiveError as error:
            raise copy.copy(error) from None  # each caller its own: a shared one would gather tracebacks

    def _sweep(self, now: float) -> None:
        """Forget the stale reads: their keys name vault tokens and identities that come and go (an
        OpenBao token is new every lease), and a read holds what it read (every version's key)."""
        self._swept_at = now
        for stale in [k for k, r in self._reads.items() if r.stale(now, self._seconds)]:
            del self._reads[stale]

    def __len__(self) -> int:
        return len(self._reads)

    def _settled(self, key: Hashable, read: _Read[T]) -> None:
        read.done_at = time.monotonic()
        error = None if read.task.cancelled() else read.task.exception()
        kept = not read.task.cancelled() and (error is None or isinstance(error, DefinitiveError))
        if not kept and self._reads.get(key) is read:
            del self._reads[key]


@dataclass
class _Read(Generic[T]):
    task: asyncio.Future[T]
    done_at: float | None = None  # when it finished; the window counts from there

    def stale(self, now: float, seconds: float) -> bool:
        return self.done_at is not None and now - self.done_at >= seconds


K = TypeVar("K", bound=Hashable)


class Bounded(Generic[K, T]):
    """A cache that holds at most ``limit`` entries, dropping the least recently used: a process that
    runs for months keeps meeting new identities, tokens and key versions, and must not keep them all.
    Its size is the metric ``vaop_cache_entries{cache=<name>}`` (without a name, one of many whose
    owner reports their sum)."""

    def __init__(self, name: str | None, *, limit: int) -> None:
        self._limit = limit
        self._entries: OrderedDict[K, T] = OrderedDict()
        if name is not None:
            metrics.CACHE_ENTRIES.labels(name).set_function(lambda: len(self._entries))

    def get(self, key: K) -> T | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: K, value: T) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self._limit:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


_tls_contexts: Bounded[str, ssl.SSLContext] = Bounded("tls-contexts", limit=256)


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """A client TLS context trusting ``ca_bundle`` (None: the system's CAs), one per bundle, shared
    by every provider and probe that names it. Making one parses the bundle (0.5 ms for one CA, 36
    ms for the system's few hundred) and holds OpenSSL's memory, which a new provider per check,
    per tenant, would otherwise make and drop again every few seconds."""
    key = ca_bundle or ""
    context = _tls_contexts.get(key)
    if context is None:
        context = ssl.create_default_context(cadata=ca_bundle) if ca_bundle else ssl.create_default_context()
        _tls_contexts.put(key, context)
    return context
