"""The key monitor: what happens when a key version appears, or a key becomes unusable, or comes back.

One loop checks each distinct (namespace, identity, CustomerKey, region) pair on a timer (and at
once when a key's Secrets change), so vault traffic grows with pairs, not with accounts. A check
resolves the key as the identity would for wrapping; the accounts of the pair are then compared
with the answer and only those that must change are enqueued for the account controller:

- a new latest version: accounts that track the latest and are wrapped by an older one (re-wrap);
- a definitive failure: accounts not yet showing it (they go KeyInaccessible at once);
- a transient failure: the pair's first failure time is kept; accounts show VaultDegraded, and
  go KeyInaccessible only once the grace period has passed;
- success after a failure: accounts not Active (recovery).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from .. import models, wrapping
from ..models import AccountKey
from ..runtime import retry
from . import ledger as ledger_

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    """What a vault check depends on: the identity acting, the key, and the account's region."""

    namespace: str
    identity: str
    key: str
    region: str

    def context(self) -> wrapping.AccountContext:
        """A stand-in account context for checking: the pair's identity, key and region."""
        spec = models.AccountSpec.parse(
            {
                "region": self.region,
                "encryption": {
                    "type": "CustomerKey",
                    "keyRef": {"name": self.key},
                    "identity": {"serviceAccountName": self.identity},
                },
            }
        )
        return wrapping.AccountContext(self.namespace, f"{self.identity}-check", spec, None, {})


@dataclass(frozen=True)
class AccountView:
    """What the monitor needs to know of an account, as its last reconciliation left it."""

    pair: Pair | None  # None: on the system key
    pinned: bool
    wrapped_version: str | None
    state: str
    reason: str
    degraded: bool
    expiring: str | None = None  # the KeyExpiring warning it shows (None: none)


@dataclass(frozen=True)
class CheckResult:
    version: str | None
    problem: wrapping.KeyProblem | None
    expiring: str | None = None  # what to warn of the version's expiry (None: nothing)


class KeyMonitor:
    def __init__(
        self,
        *,
        check: Callable[[Pair], Awaitable[CheckResult]],
        enqueue: Callable[[AccountKey], None],
        interval: float,
        grace: float,
        ledger: ledger_.Ledger | None = None,
        concurrency: int = 8,
    ) -> None:
        self._check = check
        self._enqueue = enqueue
        self.interval = interval
        self.grace = grace
        self._concurrency = asyncio.Semaphore(concurrency)
        self.ledger = ledger if ledger is not None else ledger_.Ledger()
        self._members: dict[Pair, set[AccountKey]] = defaultdict(set)
        self._failing_since: dict[Pair, float] = {}
        self._due: set[Pair] = set()
        self._wake = asyncio.Event()

    # ---- what the controller tells the monitor ----------------------------------------------

    def observed(self, account: AccountKey, view: AccountView | None) -> None:
        """Where the account now stands (None: gone), in its entry."""
        entry = self.ledger.get(account)
        previous = entry.view if entry is not None else None
        moved = (
            previous is not None
            and previous.pair is not None
            and (view is None or view.pair != previous.pair)
        )
        if moved:
            assert previous is not None and previous.pair is not None
            self._members[previous.pair].discard(account)
            if not self._members[previous.pair]:
                # The last account left the pair: nothing checks it any more.
                del self._members[previous.pair]
                self._failing_since.pop(previous.pair, None)
        if entry is not None or view is not None:
            self.ledger[account].view = view
        if view is not None and view.pair is not None:
            self._members[view.pair].add(account)

    def failed(self, pair: Pair) -> float:
        """Record a failed check or wrap, by anyone; return when the pair started failing."""
        return self._failing_since.setdefault(pair, time.monotonic())

    def grace_expired(self, pair: Pair) -> bool:
        since = self._failing_since.get(pair)
        return since is not None and time.monotonic() - since >= self.grace

    def succeeded(self, pair: Pair) -> None:
        self._failing_since.pop(pair, None)

    def check_soon(self, pairs: Iterable[Pair]) -> None:
        """Check these pairs now rather than at the next tick (a watch saw their key change)."""
        self._due.update(pairs)
        self._wake.set()

    # ---- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Sweep every pair once per interval; in between, check at once what watches flag.

        The sweep has its own deadline, so a stream of watch-triggered checks never postpones it.
        """
        next_sweep = time.monotonic() + self._next_interval()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, next_sweep - time.monotonic()))
            pairs = set(self._due)
            self._wake.clear()
            self._due.clear()
            if time.monotonic() >= next_sweep:
                pairs = self.pairs()
                next_sweep = time.monotonic() + self._next_interval()
            await asyncio.gather(*(self._check_pair(pair) for pair in pairs))

    def _next_interval(self) -> float:
        # Jitter spreads the checks of many operators (or restarts) over the interval.
        return self.interval * random.uniform(0.9, 1.1)  # noqa: S311 (not for security)

    def pairs(self) -> set[Pair]:
        return set(self._members)

    async def _check_pair(self, pair: Pair) -> None:
        async with self._concurrency:
            try:
                result = await self._check(pair)
            except Exception as error:
                why = retry.unavailable(error)  # checked again at the next sweep
                if why is None:
                    logger.exception("Checking %s failed", pair)
                else:
                    logger.warning("Checking %s: %s; next sweep retries", pair, why)
                return
        if result.problem is None:
            self.succeeded(pair)
        elif pair in self._members:  # a key checked for itself (no account) has no grace period to time
            self.failed(pair)
        logger.debug(
            "Checked %s: version %s, problem %s",
            pair,
            result.version,
            result.problem and result.problem.reason,
        )
        for account in self.to_enqueue(pair, result):
            self._enqueue(account)

    def to_enqueue(self, pair: Pair, result: CheckResult) -> list[AccountKey]:
        """The accounts of ``pair`` whose status or wrap must change after ``result`` (pure)."""
        wanted: list[AccountKey] = []
        for account in self._members.get(pair, ()):
            view = self.ledger[account].view
            assert view is not None  # a member has been observed
            if result.problem is None:
                stale = not view.pinned and view.wrapped_version != result.version
                warned = view.expiring != result.expiring  # a version that came near its expiry, or passed it
                if stale or warned or view.state != "Active" or view.degraded or view.reason != "Ready":
                    wanted.append(account)
            elif result.problem.definitive:
                if view.reason != result.problem.reason:
                    wanted.append(account)
            elif not view.degraded or (self.grace_expired(pair) and view.state != "KeyInaccessible"):
                wanted.append(account)
        return wanted
