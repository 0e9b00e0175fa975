"""A minimal Kopf operator that makes the writes any correct implementation must make per account:
it creates the account-key Secret (envelope-sized data), patches the status to Active, and posts an
Event; and nothing else (no keys, no crypto, no checks). bench/scale.py runs it beside the no-op
baselines, so the operator is compared with the same framework doing the same writes.

    kopf run --standalone --namespace <ns> bench/writes_kopf_operator.py
"""

from __future__ import annotations

import base64
import datetime
import os
from typing import Any

import kopf
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

MERGE_PATCH = "application/merge-patch+json"
ENVELOPE = base64.b64encode(os.urandom(700)).decode()  # the size of a format 2 envelope


@kopf.on.startup()
async def connect(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False
    await config.load_kube_config()
    api = client.ApiClient()
    memo.core, memo.custom, memo.events = (
        client.CoreV1Api(api),
        client.CustomObjectsApi(api),
        client.EventsV1Api(api),
    )


@kopf.on.event("videoanalyzer.io", "v1alpha1", "videoanalyzeraccounts")
async def provision(
    namespace: str | None, name: str, uid: str, status: kopf.Status, memo: kopf.Memo, **_: Any
) -> None:
    if status.get("state") == "Active" or namespace is None:
        return
    owner = client.V1OwnerReference(
        api_version="videoanalyzer.io/v1alpha1", kind="VideoAnalyzerAccount", name=name, uid=uid
    )
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name=f"{name}-account-key", owner_references=[owner]),
        data={"envelope": ENVELOPE},
    )
    try:
        await memo.core.create_namespaced_secret(namespace, secret)
    except ApiException as error:
        if error.status != 409:
            raise
    now = datetime.datetime.now(datetime.UTC)
    await memo.custom.patch_namespaced_custom_object_status(
        "videoanalyzer.io",
        "v1alpha1",
        namespace,
        "videoanalyzeraccounts",
        name,
        {"status": {"state": "Active", "accountKey": {"secretName": secret.metadata.name}}},
        _content_type=MERGE_PATCH,
    )
    event = client.EventsV1Event(
        metadata=client.V1ObjectMeta(generate_name=f"{name}.", namespace=namespace),
        event_time=now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        reporting_controller="bench/writes-kopf",
        reporting_instance="bench",
        action="Provision",
        reason="AccountKeyCreated",
        regarding=client.V1ObjectReference(
            api_version="videoanalyzer.io/v1alpha1",
            kind="VideoAnalyzerAccount",
            name=name,
            namespace=namespace,
            uid=uid,
        ),
        note="account key created",
        type="Normal",
    )
    await memo.events.create_namespaced_event(namespace, event)
