"""The status of the tenants' key objects, on the leader: what checking a CustomerKey found, the
CustomerKeys no account uses (checked as their own identity, or said to be unchecked), and every
KeyVault's reachability. The account controller's key checks report here; nothing here touches an
account.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import conditions, kubeclient, models, providers, sharding
from ..domain import keys as keys_domain
from ..listers import Listers
from ..runtime import retry
from . import accounts as reconciler
from . import keyvaults, monitor

logger = logging.getLogger(__name__)

_VAULTS_AT_ONCE = 16  # KeyVault probes in flight at once


class KeyStatus:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        listers: Listers,
        monitor: monitor.KeyMonitor,
        expiry_warning: float,
    ) -> None:
        self._api = api
        self._custom = client.CustomObjectsApi(api)
        self._listers = listers
        self.monitor = monitor
        self._expiry_warning = expiry_warning
        self.shard: sharding.Shard = sharding.AllNamespaces()  # set with the controller's

    async def report(
        self, namespace: str, report: reconciler.KeyReport, *, own_identity: bool = False
    ) -> None:
        """Show on the CustomerKey what checking it found (when that changed)."""
        problem = report.problem
        status = keys_domain.customer_key_status(
            report.version,
            (problem.reason, problem.message, problem.definitive) if problem else None,
            own_identity=own_identity,
            expiry_warning=self._expiry_warning,
        )
        if status is not None:
            await self._write_key_status(namespace, report.name, status.pop("ready"), status)

    async def _write_key_status(
        self, namespace: str, name: str, ready: conditions.Condition, fields: dict[str, Any]
    ) -> None:
        known = self._listers.customer_key(namespace, name)
        if known is None:
            return
        previous = known.status
        current = conditions.find(previous.get("conditions"), conditions.READY)
        unchanged = (
            all(previous.get(k) == v for k, v in fields.items())
            and current is not None
            and (current.get("status"), current.get("reason"), current.get("message"))
            == (ready.status, ready.reason, ready.message)
            and previous.get("observedGeneration") == known.generation
        )
        checked = ready.reason != conditions.Reason.NOT_CHECKED  # a check ran, rather than nobody could
        if unchanged and not (checked and _stale(previous.get("lastChecked"))):
            return
        status = dict(fields)
        if checked:
            status["lastChecked"] = conditions.now_rfc3339()
        status["observedGeneration"] = known.generation
        status["conditions"] = conditions.merge_with_progress(
            previous.get("conditions"),
            [ready],
            in_progress=ready.status == "Unknown",
            generation=known.generation,
        )
        try:
            await self._custom.patch_namespaced_custom_object_status(
                models.GROUP,
                models.VERSION,
                namespace,
                "customerkeys",
                name,
                {"status": status},
                _content_type=kubeclient.MERGE_PATCH,
            )
        except ApiException as error:
            if error.status != 404:
                raise

    # ---- CustomerKeys no account uses: checked as their own spec.identity, or said to be unchecked --

    def unused_key(self, namespace: str, name: str) -> monitor.Pair | models.CustomerKeySpec | None:
        """For a CustomerKey no account uses: the pair to check it as its own identity, or its spec
        when it names none; None when an account uses it (or it is gone)."""
        known = self._listers.customer_key(namespace, name)
        if known is None or any(p.namespace == namespace and p.key == name for p in self.monitor.pairs()):
            return None
        spec = known.spec
        identity = spec.identity.service_account_name
        if not identity:
            return spec
        vault = self._listers.key_vaults(namespace).get(spec.vault_ref.name)
        return monitor.Pair(namespace, identity, name, vault.region if vault is not None else "")

    async def check_unused_key(self, namespace: str, name: str) -> None:
        try:
            await sharding.within(
                self.shard, namespace, lambda: self._check_unused_key(namespace, name), None
            )
        except Exception as error:
            problem = retry.unavailable(error)
            if problem is None:
                raise
            # report_periodically goes over every key again within a check interval.
            logger.warning("Reporting on CustomerKey %s/%s deferred: %s", namespace, name, problem)

    async def refresh_key_vault(self, body: Mapping[str, Any]) -> None:
        """A KeyVault's status, in a namespace this release owns."""
        namespace = body["metadata"]["namespace"]
        try:
            await sharding.within(self.shard, namespace, lambda: keyvaults.refresh(self._api, body), None)
        except Exception as error:
            problem = retry.unavailable(error)
            if problem is None:
                raise
            name = body["metadata"]["name"]
            # report_periodically goes over every KeyVault again within a check interval.
            logger.warning(
                "KeyVault %s/%s status not written (trying again soon): %s", namespace, name, problem
            )

    async def refresh_key_vaults(self, namespace: str | None = None) -> None:
        """Every KeyVault's status (or one namespace's), each vault reached again without credentials:
        a new leader, a namespace this release gained, and every check interval, so a vault that
        stopped (or started) answering shows it before an account meets it."""
        limit = asyncio.Semaphore(_VAULTS_AT_ONCE)  # probes wait on vaults that may not answer

        async def refresh(body: Mapping[str, Any]) -> None:
            async with limit:
                await self.refresh_key_vault(body)

        await asyncio.gather(*(refresh(body) for body in await keyvaults.listing(self._api, namespace)))

    async def _refresh_all_vaults(self) -> None:
        try:
            await self.refresh_key_vaults()
        except Exception as error:
            problem = retry.unavailable(error)
            if problem is None and not isinstance(error, ApiException):
                raise
            # Not worth more than a warning: the next interval lists them again.
            logger.warning("KeyVaults not listed (trying again soon): %s", problem or error)

    async def _check_unused_key(self, namespace: str, name: str) -> None:
        found = self.unused_key(namespace, name)
        if isinstance(found, monitor.Pair):
            self.monitor.check_soon([found])
        elif found is not None:
            vault = self._listers.key_vaults(namespace).get(found.vault_ref.name)
            ready = keys_domain.unchecked_key_ready(
                found, vault=vault, refusal=providers.refusal(vault) if vault is not None else None
            )
            known = self._listers.customer_key(namespace, name)
            previous = conditions.find(known.status.get("conditions") if known else None, conditions.READY)
            if (
                ready.status == "True"
                and previous is not None
                and previous.get("reason") in keys_domain.CHECKED
            ):
                return  # what an account's check found, while one used the key, says more
            await self._write_key_status(namespace, name, ready, {})

    async def report_periodically(self) -> None:
        """Every check interval: the keys no account uses (a change of one is handled at once too),
        and every KeyVault's status."""
        await retry.every(lambda: self.monitor.interval, self._report_all, doing="Key status reports")

    async def _report_all(self) -> None:
        await self._refresh_all_vaults()
        for namespace, name in self._listers.customer_keys():
            try:
                await self.check_unused_key(namespace, name)
            except ApiException as error:
                logger.warning("Reporting on CustomerKey %s/%s failed: %s", namespace, name, error.status)


LAST_CHECKED_REFRESH = datetime.timedelta(minutes=5)


def _stale(last_checked: str | None) -> bool:
    """lastChecked is refreshed when a check finds something new, and otherwise every few minutes:
    often enough to show the checks run, rarely enough that a quiet key costs no writes. A time
    that far in the future (the clock was stepped back, or another replica's runs ahead) is stale too."""
    if not last_checked:
        return True
    then = datetime.datetime.fromisoformat(last_checked)
    return abs(datetime.datetime.now(datetime.UTC) - then) > LAST_CHECKED_REFRESH
