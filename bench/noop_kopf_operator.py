"""A no-op Kopf operator on the operator's CRDs: it sets status.state of every VideoAnalyzerAccount to
Active and does nothing else. bench/scale.py runs it as the baseline the operator is compared with
(the same framework, the same watch, one status write per account, and none of the key work).

    kopf run --standalone --namespace <ns> bench/noop_kopf_operator.py
"""

from __future__ import annotations

from typing import Any

import kopf
from kubernetes_asyncio import client, config

MERGE_PATCH = "application/merge-patch+json"


@kopf.on.startup()
async def connect(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False
    await config.load_kube_config()
    memo.custom = client.CustomObjectsApi(client.ApiClient())


@kopf.on.event("videoanalyzer.io", "v1alpha1", "videoanalyzeraccounts")
async def activate(namespace: str | None, name: str, status: kopf.Status, memo: kopf.Memo, **_: Any) -> None:
    if status.get("state") == "Active":
        return
    await memo.custom.patch_namespaced_custom_object_status(
        "videoanalyzer.io",
        "v1alpha1",
        namespace,
        "videoanalyzeraccounts",
        name,
        {"status": {"state": "Active"}},
        _content_type=MERGE_PATCH,
    )
