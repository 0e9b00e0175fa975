"""``coordination.k8s.io/v1`` Leases, written the one way leader election and shard claims share:
a body with MicroTime stamps, created when absent or replaced only if unchanged since it was read."""

from __future__ import annotations

import datetime
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException


def micro_time(moment: datetime.datetime | None = None) -> str:
    """MicroTime as the apiserver parses it (always six fractional digits, UTC); now by default."""
    moment = moment or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def body(
    namespace: str,
    name: str,
    *,
    resource_version: str | None,
    holder: str | None,
    acquired: str,
    renewed: str,
    duration: float | None = None,
    transitions: int | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Lease; ``resource_version`` set: a replacement of exactly that version."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    if labels:
        metadata["labels"] = labels
    spec: dict[str, Any] = {"holderIdentity": holder, "acquireTime": acquired, "renewTime": renewed}
    if duration is not None:
        spec["leaseDurationSeconds"] = int(duration)
    if transitions is not None:
        spec["leaseTransitions"] = transitions
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


async def write(leases: client.CoordinationV1Api, lease: dict[str, Any]) -> bool:
    """Create the Lease (no resourceVersion) or replace it (only if unchanged): False when another
    writer got there first (409), so the caller reads it again next round."""
    metadata = lease["metadata"]
    try:
        if metadata.get("resourceVersion"):
            await leases.replace_namespaced_lease(metadata["name"], metadata["namespace"], lease)
        else:
            await leases.create_namespaced_lease(metadata["namespace"], lease)
    except ApiException as error:
        if error.status == 409:
            return False
        raise
    return True
