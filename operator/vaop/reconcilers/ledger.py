"""The leader's ledger: what it knows of each account beyond its watch, one entry per account.

The account controller writes it, the key monitor reads where each account stands from it, and the
``vaop_accounts{state}`` gauge counts it; to follow an account, follow its entry. (What every
replica keeps from the watch is the account store's ``models.AccountRecord``.)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..models import AccountKey
from ..runtime.watchcache import later_version

if TYPE_CHECKING:
    from .monitor import AccountView


@dataclass
class Entry:
    # The status this operator last wrote, and the resourceVersion the write returned: newer than
    # the watch's copy until the watch catches up, so a run right after a write sees what it wrote.
    # Dropped once the watch has delivered it (a copy of every status would be about 4 KiB an
    # account, the largest thing the operator held per account).
    written_status: dict[str, Any] | None = None
    written_version: str = ""
    watched_version: str = ""  # the account's latest resourceVersion the watch delivered
    failures: int = 0  # transient vault failures in a row (backoff)
    identity_made: bool = False  # its default ServiceAccount exists
    view: AccountView | None = None  # where the key monitor last saw it (None: not reconciled yet)
    state: str | None = None  # its status.state, as last reconciled
    annotated_version: str = ""  # resourceVersion of the operator's last annotation of the account

    def wrote(self, status: dict[str, Any], resource_version: str) -> None:
        self.written_status, self.written_version = status, resource_version
        # The watch may deliver a write before the write's own response is handled: then it has it.
        self._drop_if_delivered()

    def latest_status(self, watched_status: dict[str, Any], watched_version: str) -> dict[str, Any]:
        """The account's status: what this operator wrote, if the watch has not delivered it yet
        (and if it has, the written copy is dropped here, as in ``watched``)."""
        self.watched(watched_version)
        return self.written_status if self.written_status is not None else watched_status

    def watched(self, resource_version: str) -> None:
        """The watch delivered ``resource_version`` of the account: a status written before it is
        in the watch's copy now."""
        if not self.watched_version or later_version(resource_version, self.watched_version):
            self.watched_version = resource_version
        self._drop_if_delivered()

    def _drop_if_delivered(self) -> None:
        if not self.watched_version or self.written_status is None:
            return
        if not later_version(self.written_version, self.watched_version):
            self.written_status = None  # the watch's copy has it


class Ledger:
    def __init__(self) -> None:
        self._entries: dict[AccountKey, Entry] = {}

    def __getitem__(self, key: AccountKey) -> Entry:
        """The account's entry, made empty on first use."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = Entry()
        return entry

    def get(self, key: AccountKey) -> Entry | None:
        return self._entries.get(key)

    def in_namespace(self, namespace: str) -> list[AccountKey]:
        return [key for key in self._entries if key[0] == namespace]

    def forget(self, key: AccountKey) -> None:
        self._entries.pop(key, None)

    def states(self) -> Counter[str]:
        return Counter(state for r in self._entries.values() if (state := r.state) is not None)
