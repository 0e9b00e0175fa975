"""Operator start-up and shutdown: Kopf settings, health and readiness, the webhook, leader election.

Every replica watches (Kopf indices, the account store), serves admission and answers probes. Only
the replica that holds the Lease runs the leader's work (reconcilers/leading.py); it releases the
Lease on shutdown so another replica takes over within one retry period.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import (
    accountstore,
    config,
    health,
    kubeclient,
    metrics,
    models,
    permissions,
    platformroot,
    providers,
)
from ..admission import lifecycle, tls
from ..dataapi import lifecycle as data_api
from ..listers import Listers
from ..providers import base as providers_base
from ..reconcilers import leading
from ..runtime import leadership, retry
from . import indexes, replica

logger = logging.getLogger(__name__)

# Python's default, a young collection every 700 new containers, ran one and more full ones through
# every data API list of 10,000 Videos (each about a dozen new dicts and lists, all alive until
# sent): that list took 315 ms of the operator's CPU against 245 ms with the collector off, 248 at
# 10,000. Cyclic garbage waits a little longer for its collection; nothing else changes.
YOUNG_COLLECTION_EVERY = 10_000

_ANNOTATION_PREFIX = f"kopf.{models.GROUP}"
WEBHOOK_RETRY_SECONDS = 5.0


def _configure(settings: kopf.OperatorSettings) -> None:
    # No handler here uses Kopf's change detection (all are raw events), so Kopf writes no
    # bookkeeping onto objects; the storage settings only name what older versions left behind.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=_ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=_ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{models.GROUP}/finalizer"
    settings.posting.level = logging.WARNING
    # Re-establish watches regularly so a silently dropped connection cannot stall the operator.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # List in pages, as the operator's own caches do: Kopf's default is one response with every
    # object, which must arrive within the request timeout however many accounts there are.
    settings.watching.chunk_size = 500
    settings.networking.request_timeout = 30
    settings.batching.error_delays = (1, 2, 5, 10, 30, 60, 120, 300)
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])


async def _service_ranges(api: client.ApiClient) -> list[str]:
    """The cluster's Service ranges, from its ServiceCIDR objects (none where the API lacks them)."""
    try:
        found = await client.NetworkingV1Api(api).list_service_cidr()
    except ApiException as error:
        logger.warning(
            "The cluster's ServiceCIDRs not read (%s): only VAOP_VAULT_REFUSED_CIDRS apply", error.status
        )
        return []
    return [cidr for item in found.items for cidr in (item.spec.cidrs or [])]


@kopf.on.startup()
async def start(
    settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    customer_keys: kopf.Index[Any, Any],
    key_vaults: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    _configure(settings)
    options = config.OperatorConfig()
    base = await kubeclient.load_configuration()
    api = kubeclient.api_client(base)
    policy = providers.PlatformPolicy(
        pkcs11_modules=frozenset(options.pkcs11_modules),
        addresses=options.address_policy(await _service_ranges(api)),
    )
    providers.set_policy(policy)
    logger.info("Tenants' vaults may be at %s", policy.addresses.describe())
    identities = kubeclient.Identities(api, base)
    readiness = health.Readiness()
    accounts = accountstore.AccountStore()
    root = platformroot.from_config(options, api)
    logger.info("Platform keys' root: %s", root.where)

    listers = Listers(accounts, customer_keys, key_vaults)
    renewals = _renewal_watch(options, api)
    served_data = None
    if options.data_api_port:
        served_data = data_api.DataApi(
            options,
            api,
            identities,
            listers=listers,
            root=root,
            renewed=renewals.subscribe() if renewals else None,
        )
    leader = leading.LeaderWork(
        api,
        identities,
        options,
        listers=listers,
        account_key=served_data.keys.key if served_data is not None else None,
        root=root,
    )
    memo.replica = this = replica.Replica(api, identities, readiness, accounts, leader, data_api=served_data)
    background = this.background
    metrics.serve(options.metrics_port, asyncio.get_running_loop())
    if options.health_port:
        this.health_server = health.HealthServer(
            readiness, host=options.health_host, port=options.health_port
        )
        await this.health_server.start()

    rules = permissions.required(
        webhook_configuration=options.webhook_configuration if options.webhook_port else None,
        lease=options.lease_name if options.leader_election else None,
        api_service=options.api_service if options.data_api_port else None,
        sharded=bool(options.namespace_selector),
    )
    checker = permissions.PermissionCheck(api, rules, namespace=options.namespace)
    readiness.add("permissions", checker.problem)
    background(checker.run(), "permission-check")

    sync = indexes.InitialSync(
        api,
        {
            "videoanalyzeraccounts": lambda key: key in accounts,
            "customerkeys": lambda key: key in customer_keys,
            "keyvaults": lambda key: any(name == key[1] for name, _ in key_vaults.get(key[0], ())),
        },
    )
    readiness.add("watches", sync.problem)
    readiness.add("platform-keys", lambda: leader.platform_problem)
    background(sync.run(), "initial-sync")

    if options.webhook_port:
        this.webhook = webhook = lifecycle.Webhook(
            options, api, root, renewed=renewals.subscribe() if renewals else None
        )
        readiness.add("webhook", webhook.problem)
        background(_start_webhook(webhook, accounts, customer_keys, key_vaults), "webhook-start")

    if served_data is not None:
        accounts.subscribe(served_data.keys.account_changed)
        readiness.add("data-api", served_data.problem)
        served_data.start()

    if options.leader_election:
        this.elector = elector = leadership.LeaderElector(
            api,
            leadership.LeaseSettings(
                namespace=options.namespace,
                name=options.lease_name,
                identity=options.pod_name,
                lease_duration=options.lease_duration,
                renew_deadline=options.renew_deadline,
                retry_period=options.retry_period,
            ),
            on_started=leader.start,
            on_stopped=leader.stop,
        )
        readiness.add("apiserver", elector.problem)
        background(_once_synced(sync, elector.run), "leader-election")
    else:
        background(_once_synced(sync, lambda: _lead_alone(leader)), "leader-start")
    if renewals is not None:
        background(renewals.run(), "certificate-renewals")
    background(readiness.watch(), "readiness-log")
    background(
        _freeze_once_filled([sync.synced, *([served_data.sealed.synced] if served_data else [])]), "gc"
    )


async def _freeze_once_filled(filled: list[asyncio.Event]) -> None:
    """Once the caches are filled, move what exists to the collector's permanent generation: the
    full collections that allocation-heavy requests (a data API list) set off then skip the
    long-lived objects. Measured in the data API: a list of 1,000 Videos during which a full
    collection ran took 104 to 136 ms, 40 to 60 more than the others; frozen, no more than those."""
    for event in filled:
        await event.wait()
    gc.collect()
    gc.freeze()


def _renewal_watch(options: config.OperatorConfig, api: client.ApiClient) -> tls.RenewalWatch | None:
    """With cert-manager, its Secret is watched so that a renewal is served at once."""
    if not options.webhook_cert_secret:
        return None
    return tls.RenewalWatch(api, namespace=options.namespace, name=options.webhook_cert_secret)


async def _lead_alone(leader: leading.LeaderWork) -> None:
    """Without leader election: start leading, and try again while the apiserver fails a read."""
    await retry.until_done(leader.start, doing="Starting to lead", after_failure=leader.stop)


async def _once_synced(sync: indexes.InitialSync, lead: Callable[[], Awaitable[None]]) -> None:
    """Lead only from complete indices: reconciling while they fill would find an account's key or
    vault "not found" and lock it for a moment (seen after restarts under load)."""
    await sync.synced.wait()
    await lead()


async def _start_webhook(
    webhook: lifecycle.Webhook,
    accounts: accountstore.AccountStore,
    customer_keys: kopf.Index[Any, Any],
    key_vaults: kopf.Index[Any, Any],
) -> None:
    """Start the webhook, retrying while the apiserver cannot be reached (no crash loop)."""
    await retry.until_done(
        lambda: webhook.start(accounts=accounts, customer_keys=customer_keys, key_vaults=key_vaults),
        doing="Starting the webhook",
        first=WEBHOOK_RETRY_SECONDS,
        most=WEBHOOK_RETRY_SECONDS,  # the apiserver answering again is noticed within seconds
    )


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    this = replica.of(memo)
    if this.elector is not None:
        await this.elector.release()  # stops the leader's work first
    else:
        await this.leader.stop()
    for task in this.tasks:
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.gather(*this.tasks, return_exceptions=True)
    if this.webhook is not None:
        await this.webhook.stop()
    if this.data_api is not None:
        await this.data_api.stop()
    if this.health_server is not None:
        await this.health_server.stop()
    await providers_base.shutdown()
    await this.identities.close()
    await this.api.close()
