"""Operator start-up and shutdown: Kopf settings, API client, platform keys, the account controller."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from kubernetes_asyncio import client

from .. import config, kubeclient, metrics, models, platformkeys
from ..admission import lifecycle
from ..providers import base as providers_base
from ..reconcilers import controller
from . import indexes

logger = logging.getLogger(__name__)
_ANNOTATION_PREFIX = f"kopf.{models.GROUP}"


def _configure(settings: kopf.OperatorSettings) -> None:
    # Kopf keeps its bookkeeping in annotations: the CRD schemas are structural and would prune
    # anything Kopf wrote under status.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=_ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=_ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{models.GROUP}/finalizer"
    settings.posting.level = logging.WARNING
    # Re-establish watches regularly so a silently dropped connection cannot stall the operator.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    settings.batching.error_delays = (1, 2, 5, 10, 30, 60, 120, 300)


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
    api = client.ApiClient(base)
    platform: platformkeys.PlatformKeys | None = None
    platform_error: str | None = None
    try:
        platform = await platformkeys.load_or_create(api, options.namespace)
    except platformkeys.PlatformKeyMissing as error:
        # Stay up (no crash loop) and say it on every account instead.
        platform_error = str(error)
        logger.error("Platform keys unavailable: %s", error)

    def vaults_of(namespace: str) -> dict[str, dict[str, Any]]:
        return dict(key_vaults.get(namespace, ()))

    memo.api = api
    memo.identities = kubeclient.Identities(api, base)
    memo.controller = controller.AccountController(
        api,
        platform=platform,
        platform_error=platform_error,
        identities=memo.identities,
        customer_keys=lambda namespace, name: indexes.first(customer_keys, (namespace, name)),
        key_vaults=vaults_of,
        workers=options.workers,
        check_interval=options.check_interval,
        grace_period=options.grace_period,
    )
    memo.controller.queue.start()
    memo.tasks = [
        asyncio.create_task(memo.controller.watch_account_key_secrets(), name="account-key-secrets"),
        asyncio.create_task(memo.controller.watch_key_versions(), name="key-version-secrets"),
        asyncio.create_task(memo.controller.monitor.run(), name="key-monitor"),
    ]
    metrics.serve(options.metrics_port)
    if options.webhook_port:
        memo.webhook = lifecycle.Webhook(options, api)
        await memo.webhook.start(
            accounts=memo.controller.monitor.accounts, customer_keys=customer_keys, key_vaults=key_vaults
        )


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.tasks:
        task.cancel()
    await memo.controller.queue.stop()
    if getattr(memo, "webhook", None) is not None:
        await memo.webhook.stop()
    await providers_base.shutdown()
    await memo.identities.close()
    await memo.api.close()
