"""What only the leader does, started when it wins the Lease and stopped the moment it loses it.

The leader loads (or, the very first time, makes) the platform keys and runs the account
controller: its work queue, the key monitor and the watches of account-key and key-version
Secrets. Every other replica keeps its Kopf watches and indices (admission needs them) but writes
nothing. A new leader enqueues every account it knows, so nothing that happened while no one led
is missed; reconciliations are idempotent, so re-checking accounts that are already right costs
reads, not writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import config, events, kubeclient, metrics, platformkeys, platformroot, sharding
from ..dataapi import keys as account_keys
from ..listers import Listers
from ..runtime import retry
from . import controller, sealedobjects

logger = logging.getLogger(__name__)


class LeaderWork:
    def __init__(
        self,
        api: client.ApiClient,
        identities: kubeclient.Identities,
        options: config.OperatorConfig,
        *,
        listers: Listers,
        account_key: Callable[[str, str], Awaitable[account_keys.Opened]] | None = None,
        root: platformroot.Root | None = None,
    ) -> None:
        self._root = root or platformroot.kubernetes_root(api, options.namespace)
        self.platform_problem: str | None = None  # why the platform keys cannot be loaded now
        self._api = api
        self._identities = identities
        self._options = options
        self._listers = listers
        self._account_key = account_key  # None: no data API here, so no SealedObjects to keep
        self.controller: controller.AccountController | None = None
        self.sealed_objects: sealedobjects.SealedObjectUpkeep | None = None
        self._claims: sharding.NamespaceClaims | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if not await self._try_to_lead():
            # Not ready, and no account touched: each keeps its state until the root answers.
            self._tasks.append(asyncio.create_task(self._start_when_root_answers(), name="platform-root"))

    async def _try_to_lead(self) -> bool:
        """Load the platform keys and start the account controller; False while the root does not
        answer (other errors are raised: the caller steps back and tries again)."""
        try:
            platform = await platformkeys.load_or_create(self._api, self._options.namespace, self._root)
        except platformroot.RootUnavailable as error:
            self._root_unusable(error)
            return False
        except platformroot.PlatformKeyMissing as error:
            # Stay up (no crash loop) and say it on every account instead.
            logger.error("Platform keys unavailable: %s", error)
            self.platform_problem = None
            await self._start_with(None, str(error))
            return True
        self.platform_problem = None
        await self._start_with(platform, None)
        return True

    def _root_unusable(self, error: platformroot.RootUnavailable) -> None:
        if self.platform_problem != str(error):
            logger.error("Platform keys unavailable, waiting for the root: %s", error)
        self.platform_problem = str(error)

    async def _start_when_root_answers(self) -> None:
        """Ask the root again, backing off to every 30 s, and lead once it answers: no restart."""

        async def lead() -> None:
            if not await self._try_to_lead():
                raise retry.Transient(f"the platform keys' root does not answer: {self.platform_problem}")

        await asyncio.sleep(2.0)  # start() has just asked
        await retry.until_done(lead, doing="Leading", first=4.0, most=30.0)  # asks at 2, 6, 14, 30 s...
        logger.info("The platform keys' root answers: leading")

    async def _start_with(
        self, platform: platformkeys.PlatformKeys | None, platform_error: str | None
    ) -> None:
        work = controller.AccountController(
            self._api,
            platform=platform,
            platform_error=platform_error,
            identities=self._identities,
            listers=self._listers,
            workers=self._options.workers,
            check_interval=self._options.check_interval,
            grace_period=self._options.grace_period,
            expiry_warning=self._options.key_expiry_warning_days * 86400,
        )
        await work.default_identities.find()
        if self._options.namespace_selector:
            self._claims = work.shard = self._claims_for(work, self._options.namespace_selector)
            await self._claims.start()
        work.queue.start()
        self._tasks += [
            asyncio.create_task(work.secrets.run(), name="account-key-secrets"),
            asyncio.create_task(work.watch_key_versions(), name="key-version-secrets"),
            asyncio.create_task(work.monitor.run(), name="key-monitor"),
            asyncio.create_task(work.key_status.report_periodically(), name="periodic-reports"),
        ]
        if self._claims is not None:
            self._tasks.append(asyncio.create_task(self._claims.run(), name="namespace-claims"))
        if self._account_key is not None:
            upkeep = sealedobjects.SealedObjectUpkeep(
                self._api, listers=self._listers, account_key=self._account_key
            )
            upkeep.queue.start()
            self._tasks.append(asyncio.create_task(upkeep.run(), name="sealed-objects"))
            self.sealed_objects = upkeep
        if platform is not None:
            self._tasks.append(
                asyncio.create_task(self._keep_platform_keys(work, platform), name="platform-keys")
            )
        self.controller = work
        for account in self._listers.accounts():
            work.queue.add(account)
        # Every KeyVault's status is refreshed by periodic-reports, at once: a KeyVault listing the
        # apiserver fails is retried there, and does not throw away the leadership just started.
        metrics.LEADING.set(1)

    async def _keep_platform_keys(
        self, work: controller.AccountController, platform: platformkeys.PlatformKeys
    ) -> None:
        """Every check interval: rotate a platform key whose cryptoperiod has passed, move every
        account onto new versions (made here or by `vaop platform rotate`), and count what each
        version still holds (vaop_platform_key_envelopes)."""
        moving = False  # a rotation's envelopes are still moving: tell when they all have

        async def upkeep() -> None:
            nonlocal platform, moving
            try:
                fresh = await self._rotate_due(platform)
            except platformroot.RootUnavailable as error:
                self._root_unusable(error)
                return
            self.platform_problem = None
            if fresh.versions() != platform.versions():
                logger.info("Platform keys rotated (%s): moving every account onto them", fresh.versions())
                work.use_platform(fresh, self._listers.accounts())
                moving = True
                await self._tell(
                    "PlatformKeyRotated",
                    f"{_current(fresh)} current (was {_current(platform)}): moving every envelope onto it",
                )
            elif fresh.infrastructure.keys() != platform.infrastructure.keys():
                work.use_platform(fresh, ())  # a version retired: nothing to move
            platform = fresh
            counted = work.count_platform_key_use()
            if moving and platformkeys.all_current(counted, platform):
                moving = False
                await self._tell(
                    "PlatformKeysMoved",
                    f"every envelope is on {_current(platform)}; versions that hold none may be "
                    "retired (vaop platform status lists them, vaop platform retire removes one)",
                )

        await retry.every(self._options.check_interval, upkeep, doing="Platform key upkeep", at_once=False)

    async def _rotate_due(self, platform: platformkeys.PlatformKeys) -> platformkeys.PlatformKeys:
        """Seal the keys under the root, rotate those past their cryptoperiod, and read them again."""
        namespace = self._options.namespace
        try:
            await platformkeys.seal(self._api, namespace, self._root)
            for key in platformkeys.due(
                platform,
                infrastructure_days=self._options.infrastructure_key_days,
                system_days=self._options.system_key_days,
            ):
                if key == platformkeys.INFRASTRUCTURE:
                    await platformkeys.rotate_infrastructure(self._api, namespace, self._root)
                else:
                    await platformkeys.rotate_system(self._api, namespace)
            return await platformkeys.load(self._api, namespace, self._root)
        except platformroot.PlatformKeyMissing as error:
            raise retry.Transient(str(error)) from None

    async def _tell(self, reason: str, message: str) -> None:
        """An Event on the infrastructure key's Secret: platform key rotations are the platform
        team's, told where they look (not on 10,000 accounts)."""
        involved = client.V1ObjectReference(
            api_version="v1",
            kind="Secret",
            namespace=self._options.namespace,
            name=platformkeys.INFRASTRUCTURE_SECRET,
        )
        try:
            await events.post(self._api, involved, reason=reason, message=message)
        except Exception as error:
            if not _worth_retrying(error):
                raise
            logger.warning("Event %s not posted: %s", reason, error)

    def _claims_for(
        self, work: controller.AccountController, selector: dict[str, Any]
    ) -> sharding.NamespaceClaims:
        async def gained(namespace: str) -> None:
            if self.controller is None:
                return  # claimed while starting: start() goes on to enqueue and refresh everything
            for account in self._listers.accounts():
                if account[0] == namespace:
                    work.queue.add(account)
            await work.key_status.refresh_key_vaults(namespace)

        return sharding.NamespaceClaims(
            self._api,
            namespace=self._options.namespace,
            release=self._options.lease_name,
            selector=sharding.selector_string(selector),
            on_gained=gained,
            on_lost=work.forget_namespace,
            retry_period=self._options.retry_period,
        )

    async def stop(self) -> None:
        """Stop at once: running reconciliations are cancelled (each is crash-safe by design)."""
        work, self.controller = self.controller, None
        metrics.LEADING.set(0)
        self.platform_problem = None  # the next leader tells
        upkeep, self.sealed_objects = self.sealed_objects, None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._claims is not None:
            await self._claims.stop()
            self._claims = None
        if upkeep is not None:
            await upkeep.queue.stop()
        if work is not None:
            await work.queue.stop()
            await work.rotations.close()
            await work.pool.close()


def _worth_retrying(error: Exception) -> bool:
    """The apiserver was away, busy or refused this once: the loop goes on and asks again."""
    return retry.unavailable(error) is not None or isinstance(error, ApiException)


def _current(keys: platformkeys.PlatformKeys) -> str:
    versions = keys.versions()
    return (
        f"infrastructure-key version {versions[platformkeys.INFRASTRUCTURE]} and system-key version "
        f"{versions[platformkeys.SYSTEM]}"
    )
