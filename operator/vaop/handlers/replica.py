"""What one replica runs, built once at start (``setup.start``) and reached by every handler through
``of(memo)``: one typed object instead of loose attributes on Kopf's memo."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes_asyncio import client

from .. import accountstore, health, kubeclient
from ..admission import lifecycle as webhook_lifecycle
from ..dataapi import lifecycle as data_api_lifecycle
from ..reconcilers import leading
from ..runtime import leadership


@dataclass
class Replica:
    api: client.ApiClient
    identities: kubeclient.Identities
    readiness: health.Readiness
    accounts: accountstore.AccountStore  # every replica's view of the accounts
    leader: leading.LeaderWork  # its controller is None unless this replica leads
    data_api: data_api_lifecycle.DataApi | None = None
    webhook: webhook_lifecycle.Webhook | None = None
    elector: leadership.LeaderElector | None = None
    health_server: health.HealthServer | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def background(self, coroutine: Any, name: str) -> None:
        """A task that lives as long as the replica (cancelled at shutdown)."""
        self.tasks.append(asyncio.create_task(coroutine, name=name))


def of(memo: kopf.Memo) -> Replica:
    replica: Replica = memo.replica
    return replica
