"""The account controller: a work queue of accounts, each run reads, reconciles and writes status.

Every trigger (account created or changed, its Secret deleted, its CustomerKey or KeyVault changed)
only enqueues the account; one worker at a time handles a given account. The account comes from the
account store, what its references point to from Kopf indices and its Secret from a watch cache (all
in memory), so a run reads nothing from the API.
"""

from __future__ import annotations

import collections
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import (
    conditions,
    events,
    kubeclient,
    labels,
    metrics,
    models,
    platformkeys,
    platformroot,
    providerpool,
    sharding,
    wrapping,
)
from ..crypto import envelope
from ..domain import accounts as domain
from ..domain import keys as keys_domain
from ..listers import Listers
from ..models import AccountKey
from ..providers import kubernetes as kubernetes_provider
from ..runtime import watchcache, workqueue
from . import accounts as reconciler
from . import identities as identities_reconciler
from . import keystatus, ledger, monitor

logger = logging.getLogger(__name__)

REFUSED_RETRY = 15.0
REFUSALS = (400, 403, 422)
BACKOFF = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class AccountController:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        platform: platformkeys.PlatformKeys | None,
        platform_error: str | None,
        identities: kubeclient.Identities,
        listers: Listers,
        workers: int = 8,
        check_interval: float = 30.0,
        grace_period: float = 300.0,
        expiry_warning: float = 30 * 86400,
        shard: sharding.Shard | None = None,
    ) -> None:
        self._api = api
        self._expiry_warning = expiry_warning
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)
        self._platform = platform
        self._platform_error = platform_error
        self._listers = listers
        self.secrets = watchcache.WatchCache(
            self._core.list_secret_for_all_namespaces,
            label_selector=labels.ACCOUNT_KEY_SELECTOR,
            on_event=self._account_key_secret_changed,
        )
        self.pool = providerpool.ProviderPool()
        self._reconciler = (
            reconciler.AccountReconciler(
                api, platform, identities, self.secrets, self.pool, expiry_warning=expiry_warning
            )
            if platform
            else None
        )
        self._contexts = wrapping.Contexts(listers)
        self._identities = identities
        self.ledger = ledger.Ledger()
        self.default_identities = identities_reconciler.DefaultIdentities(api, self.ledger)
        metrics.count_states(self.ledger.states)
        self.rotations = events.RotationSummary(api)
        self.queue: workqueue.WorkQueue[AccountKey] = workqueue.WorkQueue(
            self.process, workers=workers, name="accounts"
        )
        self.monitor = monitor.KeyMonitor(
            check=self.check_pair,
            enqueue=self.queue.add,
            interval=check_interval,
            grace=grace_period,
            ledger=self.ledger,
        )
        self.key_status = keystatus.KeyStatus(
            api,
            listers=listers,
            monitor=self.monitor,
            expiry_warning=expiry_warning,
        )
        self._shard: sharding.Shard = shard or sharding.AllNamespaces()
        self.key_status.shard = self._shard

    @property
    def shard(self) -> sharding.Shard:
        """The namespaces this release writes; the key status reports keep to them too."""
        return self._shard

    @shard.setter
    def shard(self, shard: sharding.Shard) -> None:
        self._shard = self.key_status.shard = shard

    async def process(self, key: AccountKey) -> float | None:
        await self.secrets.synced.wait()  # a Secret not yet listed must not look missing
        # Another release's namespace: nothing to do here (sharding.py).
        return await sharding.within(self.shard, key[0], lambda: self._reconcile(key), None)

    async def _reconcile(self, key: AccountKey) -> float | None:
        namespace, name = key
        seen = self._listers.account(namespace, name)  # the watch's copy: no GET
        if seen is None or seen.deleting:
            self._forget(key)
            return None
        entry = self.ledger[key]
        status = entry.latest_status(seen.status, seen.resource_version)
        spec = models.AccountSpec.parse(seen.spec)

        delay: float | None = None
        if self._reconciler is None:
            result = reconciler.Result(
                domain.outcome_error(conditions.Reason.PLATFORM_KEY_MISSING, self._platform_error or ""),
                None,
                [],
            )
        else:
            context = self._context(namespace, name, spec)
            pair = _pair(context)
            grace_expired = pair is not None and self.monitor.grace_expired(pair)
            account = reconciler.Account(
                seen.uid,
                context,
                status,
                grace_expired,
                account_id=seen.account_id,
                replace_key=seen.replace_key,
            )
            try:
                await self.default_identities.ensure(key, seen.uid, spec, entry)
                result = await self._reconciler.reconcile(account)
            except ApiException as error:
                if error.status not in REFUSALS:
                    raise
                # A write the apiserver will not take (a quota, a policy, a webhook of someone else's):
                # say it on the account with the apiserver's own words, and try again later.
                await self._write_status(
                    key, seen, status, domain.outcome_error(conditions.Reason.WRITE_REFUSED, _refusal(error))
                )
                return REFUSED_RETRY
            if result.annotated is not None:
                entry.annotated_version = result.annotated
            delay = self.monitor.interval if result.retry else self._backoff(entry, result.outcome)
            self._observe(key, context, status, result)
            logger.debug(
                "Account %s/%s reconciled: %s, %s (grace expired: %s)",
                namespace,
                name,
                result.outcome.state.value,
                result.outcome.conditions[0].reason,
                grace_expired,
            )
        try:
            await self._write_status(key, seen, status, result.outcome)
        except ApiException as error:
            if error.status != 404:
                raise
            self._forget(key)  # deleted while it was being reconciled: nothing left to report on
            return None
        if result.key_report is not None:
            await self.key_status.report(namespace, result.key_report)
        for told in result.events:
            await events.post(
                self._api,
                _reference(key, seen),
                reason=told.reason,
                message=told.message,
                warning=told.warning,
            )
        if result.rotation is not None and spec.encryption.key_ref is not None:
            self.rotations.add(namespace, spec.encryption.key_ref.name, result.rotation, name)
        metrics.RECONCILIATIONS.labels(result.outcome.conditions[0].reason).inc()
        return delay

    def _observe(
        self,
        key: AccountKey,
        context: wrapping.AccountContext,
        status: dict[str, Any],
        result: reconciler.Result,
    ) -> None:
        """Tell the monitor where this account now stands; count rotations and detection latency."""
        outcome = result.outcome
        pair = _pair(context)
        ready = outcome.conditions[0]
        degraded = any(c.type == conditions.VAULT_DEGRADED and c.status == "True" for c in outcome.conditions)
        wrapped_by = (outcome.account_key or status.get("accountKey") or {}).get("wrappedBy", {})
        if pair is not None:
            if ready.status == "True":
                self.monitor.succeeded(pair)
            elif ready.reason not in (conditions.Reason.ACCOUNT_KEY_LOST, conditions.Reason.UNWRAP_FAILED):
                since = self.monitor.failed(pair)
                was_locked = status.get("state") == models.AccountState.KEY_INACCESSIBLE.value
                if outcome.state is models.AccountState.KEY_INACCESSIBLE and not was_locked:
                    metrics.DETECTION_SECONDS.observe(time.monotonic() - since)
        self.monitor.observed(
            key,
            monitor.AccountView(
                pair=pair,
                pinned=bool(context.customer_key and context.customer_key.pinned_version),
                wrapped_version=wrapped_by.get("keyVersion")
                if wrapped_by.get("type") == "CustomerKey"
                else None,
                state=outcome.state.value,
                reason=ready.reason,
                degraded=degraded,
                expiring=next(
                    (
                        c.message
                        for c in outcome.conditions
                        if c.type == conditions.KEY_EXPIRING and c.status == "True"
                    ),
                    None,
                ),
            ),
        )
        if result.rotation is not None or any(t.reason == "AccountKeyRewrapped" for t in result.events):
            metrics.ROTATIONS.inc()

    def count_platform_key_use(self) -> collections.Counter[tuple[str, str]]:
        """Envelopes by platform key version, from the account-key Secrets' watch cache (and the gauge)."""
        envelopes = []
        for namespace, name in self.secrets.held():
            found = self.secrets.get(namespace, name)
            try:
                envelopes.append(domain.envelope_in(found.data if found is not None else None))
            except envelope.EnvelopeError:
                continue  # unreadable: its account says so
        root = self._platform.root.kind if self._platform is not None else platformroot.KUBERNETES
        counted = platformkeys.usage(envelopes, root)
        metrics.PLATFORM_KEY_ENVELOPES.clear()
        for (key, version), count in counted.items():
            metrics.PLATFORM_KEY_ENVELOPES.labels(key, version).set(count)
        return counted

    def use_platform(self, platform: platformkeys.PlatformKeys, accounts: Iterable[AccountKey]) -> None:
        """New platform key versions (a rotation): every account is reconciled onto them, at the
        work queue's pace (its workers), so the apiserver stays responsive."""
        self._platform = platform
        if self._reconciler is not None:
            self._reconciler.use_platform(platform)
        for account in accounts:
            self.queue.add(account)

    def _forget(self, key: AccountKey) -> None:
        self.monitor.observed(key, None)
        self.ledger.forget(key)

    def watched(self, key: AccountKey, resource_version: str) -> bool:
        """The account's watch delivered ``resource_version`` (see ``Record.watched``); True when that
        is the echo of the operator's own annotation of the account (nothing new to reconcile)."""
        entry = self.ledger.get(key)
        if entry is None:
            return False
        entry.watched(resource_version)
        return bool(entry.annotated_version) and entry.annotated_version == resource_version

    def forget_namespace(self, namespace: str) -> None:
        """Handed over to another release: its accounts leave the monitor and the gauge."""
        for key in self.ledger.in_namespace(namespace):
            self._forget(key)

    async def check_pair(self, pair: monitor.Pair) -> monitor.CheckResult:
        """One vault check for a (namespace, identity, key, region) pair, as that identity."""
        # Handed over meanwhile: its accounts are forgotten, nothing to report.
        nothing = monitor.CheckResult(None, None)
        return await sharding.within(self.shard, pair.namespace, lambda: self._check_pair(pair), nothing)

    async def _check_pair(self, pair: monitor.Pair) -> monitor.CheckResult:
        assert self._platform is not None
        context = pair.context()
        customer_key = self._listers.customer_key(pair.namespace, pair.key)
        context = wrapping.AccountContext(
            namespace=context.namespace,
            name=context.name,
            spec=context.spec,
            customer_key=customer_key.spec if customer_key is not None else None,
            vaults=self._listers.key_vaults(pair.namespace),
        )
        own_identity = pair not in self.monitor.pairs()  # no account uses it: checked as spec.identity
        # Always asks the vault (never a pooled answer), and leaves the answer for the reconciliations.
        async with wrapping.Session(self._platform, self._identities, pool=self.pool, fresh=True) as session:
            try:
                target = await session.target(context)
            except wrapping.KeyProblem as problem:
                report = reconciler.KeyReport(pair.key, None, problem)
                await self.key_status.report(pair.namespace, report, own_identity=own_identity)
                return monitor.CheckResult(None, problem)
        report = reconciler.KeyReport(pair.key, target.version, None)
        await self.key_status.report(pair.namespace, report, own_identity=own_identity)
        expiring = keys_domain.expiry_note(target.version, warning=self._expiry_warning)
        return monitor.CheckResult(target.version.version, None, expiring)

    def key_location(self, pair: monitor.Pair) -> tuple[str, str] | None:
        """(namespace of the key Secrets, key name) for pairs on kubernetes-provider keys."""
        customer_key = self._listers.customer_key(pair.namespace, pair.key)
        if customer_key is None:
            return None
        key = customer_key.spec
        vault = self._listers.key_vaults(pair.namespace).get(key.vault_ref.name)
        if vault is None or vault.provider.kubernetes is None:
            return None
        return (vault.provider.kubernetes.namespace or pair.namespace, key.key_name)

    def _backoff(self, entry: ledger.Entry, outcome: domain.Outcome) -> float | None:
        """Transient vault failures retry with growing delays; everything else waits for a change."""
        if outcome.conditions[0].reason == conditions.Reason.ACCOUNT_KEY_NAME_TAKEN:
            return REFUSED_RETRY  # the Secret in the way is not the operator's, so not watched: look again
        degraded = any(c.type == conditions.VAULT_DEGRADED and c.status == "True" for c in outcome.conditions)
        if not degraded:
            entry.failures = 0
            return None
        entry.failures += 1
        return BACKOFF[min(entry.failures, len(BACKOFF)) - 1]

    def _context(self, namespace: str, name: str, spec: models.AccountSpec) -> wrapping.AccountContext:
        return self._contexts.context(namespace, name, spec)

    async def _write_status(
        self, key: AccountKey, seen: models.AccountRecord, before: dict[str, Any], outcome: domain.Outcome
    ) -> None:
        """Write the outcome into the account's status, unless the status says it already."""
        namespace, name = key
        merged = conditions.merge_with_progress(
            before.get("conditions"),
            outcome.conditions,
            in_progress=domain.in_progress(outcome),
            generation=seen.generation,
        )
        status: dict[str, Any] = {
            "state": outcome.state.value,
            "observedGeneration": seen.generation,
            "conditions": merged,
        }
        if outcome.account_key is not None:
            status["accountKey"] = outcome.account_key
        entry = self.ledger[key]
        entry.state = outcome.state.value
        if all(before.get(field) == value for field, value in status.items()):
            return
        written = await self._custom.patch_namespaced_custom_object_status(
            models.GROUP,
            models.VERSION,
            namespace,
            "videoanalyzeraccounts",
            name,
            {"status": status},
            _content_type=kubeclient.MERGE_PATCH,
        )
        entry.wrote(written.get("status") or {}, str(written["metadata"]["resourceVersion"]))
        for changed, warning in conditions.transitions_to_tell(before.get("conditions"), merged):
            await events.post(
                self._api,
                _reference(key, seen),
                reason=changed["reason"],
                message=f"{changed['type']}={changed['status']}: {changed['message']}",
                warning=warning,
            )

    def _account_key_secret_changed(self, kind: str, secret: Any) -> None:
        """A deleted or edited account-key Secret re-checks its account at once (AccountKeyLost), and
        so does one that appears without an owner: restored, for an account that may be waiting."""
        account = (secret.metadata.labels or {}).get(labels.ACCOUNT)
        if account and (kind != "ADDED" or not secret.metadata.owner_uids):
            self.queue.add((secret.metadata.namespace, account))

    async def watch_key_versions(self) -> None:
        """The kubernetes provider can signal changes: a key version Secret added, edited or deleted
        triggers a check of the pairs on that key now instead of at the next tick."""

        def on_event(kind: str, secret: Any) -> None:
            key_name = (secret.metadata.labels or {}).get(kubernetes_provider.LABEL_KEY_NAME)
            location = (secret.metadata.namespace, key_name)
            self.monitor.check_soon(p for p in self.monitor.pairs() if self.key_location(p) == location)

        await watchcache.WatchCache(
            self._core.list_secret_for_all_namespaces,
            label_selector=kubernetes_provider.LABEL_KEY_NAME,
            on_event=on_event,
        ).run()


def _refusal(error: ApiException) -> str:
    """The apiserver's message for a refused write (a Status body), or its reason."""
    try:
        message = json.loads(error.body or "{}").get("message")
    except ValueError:
        message = None
    refused = f"The apiserver refused a write the operator needs ({error.status} {error.reason})"
    return f"{refused}: {message or error.reason}"


def _pair(context: wrapping.AccountContext) -> monitor.Pair | None:
    key_ref = context.spec.encryption.key_ref
    if context.spec.encryption.type is not models.EncryptionType.CUSTOMER_KEY or key_ref is None:
        return None
    return monitor.Pair(context.namespace, context.identity.name, key_ref.name, context.spec.region)


def _reference(key: AccountKey, seen: models.AccountRecord) -> client.V1ObjectReference:
    return client.V1ObjectReference(
        api_version=models.API_VERSION,
        kind="VideoAnalyzerAccount",
        name=key[1],
        namespace=key[0],
        uid=seen.uid,
        resource_version=seen.resource_version,
    )
