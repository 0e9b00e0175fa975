"""``vaop platform``: the platform team's commands for its own keys (status, rotate, retire), run with
the platform administrator's kubeconfig. Rotation is also automatic, on the cryptoperiods of the
chart's ``platformKeys.rotation``; retiring a version is a person's act, refused while any envelope
still uses it."""

from __future__ import annotations

import collections

from kubernetes_asyncio import client

from . import keyadmin, labels, platformkeys
from .crypto import envelope
from .domain import accounts as domain


async def in_use(api: client.ApiClient) -> tuple[collections.Counter[tuple[str, str]], int]:
    """Envelopes by (key, version), read from every account-key Secret; and how many did not read."""
    found = await client.CoreV1Api(api).list_secret_for_all_namespaces(
        label_selector=labels.ACCOUNT_KEY_SELECTOR
    )
    envelopes, unreadable = [], 0
    for secret in found.items:
        try:
            envelopes.append(domain.envelope_in(secret.data))
        except envelope.EnvelopeError:
            unreadable += 1
    return platformkeys.usage(envelopes), unreadable


async def status(api: client.ApiClient, namespace: str) -> str:
    """Each version of both keys: which is current, since when, and how many envelopes use it."""
    keys = await platformkeys.load(api, namespace)
    counted, unreadable = await in_use(api)
    system = [
        (str(number), secret.metadata.creation_timestamp)
        for number, secret in await platformkeys.system_versions(client.CoreV1Api(api), namespace)
    ]
    rows = [("KEY", "VERSION", "CURRENT", "SINCE", "ENVELOPES")]
    for version in sorted(keys.infrastructure, key=int):
        current = version == keys.infrastructure_version
        since = _date(keys.infrastructure_since) if current else ""
        rows.append(
            (
                platformkeys.INFRASTRUCTURE,
                version,
                _yes(current),
                since,
                str(counted[(platformkeys.INFRASTRUCTURE, version)]),
            )
        )
    for version, created in system:
        current = version == keys.system_version
        rows.append(
            (
                platformkeys.SYSTEM,
                version,
                _yes(current),
                _date(created),
                str(counted[(platformkeys.SYSTEM, version)]),
            )
        )
    return keyadmin.table(rows) + (
        f"\n{unreadable} account-key Secrets did not read as envelopes" if unreadable else ""
    )


async def rotate(api: client.ApiClient, namespace: str, key: str) -> str:
    if key == platformkeys.INFRASTRUCTURE:
        version = await platformkeys.rotate_infrastructure(api, namespace)
    else:
        version = await platformkeys.rotate_system(api, namespace)
    return (
        f"{key} version {version} is current; the operator moves every envelope onto it within a check "
        "interval (vaop platform status counts what each version still holds)"
    )


async def retire(api: client.ApiClient, namespace: str, key: str, version: str) -> str:
    """Delete an old version once no envelope uses it; refuses the current one and one in use."""
    keys = await platformkeys.load(api, namespace)
    if version == keys.versions()[key]:
        raise ValueError(f"{key} version {version} is the current one; rotate first, then retire it")
    counted, unreadable = await in_use(api)
    if counted[(key, version)] or unreadable:
        held = counted[(key, version)]
        raise ValueError(
            f"{key} version {version} still holds {held} envelopes ({unreadable} Secrets did not read): "
            "wait until the operator has moved them (vaop platform status), then retire it"
        )
    core = client.CoreV1Api(api)
    if key == platformkeys.INFRASTRUCTURE:
        secret = await core.read_namespaced_secret(platformkeys.INFRASTRUCTURE_SECRET, namespace)
        if version not in (secret.data or {}):
            raise ValueError(f"{key} has no version {version}")
        secret.data = {v: data for v, data in secret.data.items() if v != version}
        await core.replace_namespaced_secret(platformkeys.INFRASTRUCTURE_SECRET, namespace, secret)
    else:
        found = dict(await platformkeys.system_versions(client.CoreV1Api(api), namespace)).get(int(version))
        if found is None:
            raise ValueError(f"{key} has no version {version}")
        await core.delete_namespaced_secret(found.metadata.name, namespace)
    return f"{key} version {version} retired (no envelope used it)"


def _yes(flag: bool) -> str:
    return "yes" if flag else ""


def _date(moment: object) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment is not None else ""
