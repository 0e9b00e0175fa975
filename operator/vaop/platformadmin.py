"""``vaop platform``: the platform team's commands for its own keys (status, rotate, retire), run with
the platform administrator's kubeconfig. Rotation is also automatic, on the cryptoperiods of the
chart's ``platformKeys.rotation``; retiring a version is a person's act, refused while any envelope
still uses it."""

from __future__ import annotations

import collections

from kubernetes_asyncio import client

from . import keyadmin, labels, platformkeys, platformroot
from .crypto import envelope
from .domain import accounts as domain


async def in_use(
    api: client.ApiClient, root: str = platformroot.KUBERNETES
) -> tuple[collections.Counter[tuple[str, str]], int]:
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
    return platformkeys.usage(envelopes, root), unreadable


async def _system_versions(
    api: client.ApiClient, namespace: str, stored: platformkeys.Stored
) -> dict[str, client.V1Secret | None]:
    """Every system key version there is to show, oldest first, with its Secret where it is one: the
    kubernetes root's Secrets (named "kubernetes/N" once another root wraps), and the root's current
    version as the leader last saw it."""
    secrets = await platformkeys.system_versions(client.CoreV1Api(api), namespace)
    shown: dict[str, client.V1Secret | None] = {
        platformkeys.system_label(platformroot.KUBERNETES, str(n), stored.root): secret
        for n, secret in secrets
    }
    if stored.system_version is not None:
        shown.setdefault(stored.system_version, None)
    return shown


def _current_system(stored: platformkeys.Stored, system: dict[str, client.V1Secret | None]) -> str:
    return stored.system_version or (list(system)[-1] if system else "")


async def status(api: client.ApiClient, namespace: str) -> str:
    """Each version of both keys: which is current, since when, and how many envelopes use it."""
    stored = await platformkeys.stored(api, namespace)
    counted, unreadable = await in_use(api, stored.root)
    system = await _system_versions(api, namespace, stored)
    current_system = _current_system(stored, system)
    # Older versions of a vault's key still holding envelopes (its versions are not listed here).
    older = sorted(v for (k, v) in counted if k == platformkeys.SYSTEM and v not in system)
    rows = [("KEY", "VERSION", "CURRENT", "SINCE", "ENVELOPES")]
    for version in stored.versions:
        current = version == stored.current
        since = _date(stored.since) if current else ""
        rows.append(
            (
                platformkeys.INFRASTRUCTURE,
                version,
                _yes(current),
                since,
                str(counted[(platformkeys.INFRASTRUCTURE, version)]),
            )
        )
    for version in [*system, *older]:
        secret = system.get(version)
        rows.append(
            (
                platformkeys.SYSTEM,
                version,
                _yes(version == current_system),
                _date(secret.metadata.creation_timestamp if secret is not None else None),
                str(counted[(platformkeys.SYSTEM, version)]),
            )
        )
    where = (
        f"\nThe system key lives in the {stored.root} root." if stored.root != platformroot.KUBERNETES else ""
    )
    return (
        keyadmin.table(rows)
        + where
        + (f"\n{unreadable} account-key Secrets did not read as envelopes" if unreadable else "")
    )


async def rotate(api: client.ApiClient, namespace: str, key: str) -> str:
    stored = await platformkeys.stored(api, namespace)
    if stored.root != platformroot.KUBERNETES:
        if key == platformkeys.SYSTEM:
            raise ValueError(
                f"the system key lives in the {stored.root} root: rotate it there (OpenBao: bao write -f "
                "transit/keys/<name>/rotate; an HSM: a new key pair with the same label and the next "
                "id); the operator moves every envelope onto the new version within a check interval"
            )
        # Only the leader can wrap a new version with the root: it is asked, and does it at once.
        await platformkeys.request_infrastructure_rotation(api, namespace)
        return (
            f"{key}: a new version was requested; the operator makes it current and moves every "
            "envelope onto it within a check interval (vaop platform status shows it)"
        )
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
    stored = await platformkeys.stored(api, namespace)
    system = await _system_versions(api, namespace, stored)
    current = stored.current if key == platformkeys.INFRASTRUCTURE else _current_system(stored, system)
    if version == current:
        raise ValueError(f"{key} version {version} is the current one; rotate first, then retire it")
    counted, unreadable = await in_use(api, stored.root)
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
        return f"{key} version {version} retired (no envelope used it)"
    if stored.root != platformroot.KUBERNETES and not version.startswith(f"{platformroot.KUBERNETES}/"):
        raise ValueError(
            f"{key} version {version} lives in the {stored.root} root: retire it there (OpenBao: raise the "
            "key's min_decryption_version; an HSM: destroy the key pair) once no envelope uses it"
        )
    found = system.get(version)
    if found is None:
        raise ValueError(f"{key} has no version {version}")
    await core.delete_namespaced_secret(found.metadata.name, namespace)
    return f"{key} version {version} retired (no envelope used it)"


def _yes(flag: bool) -> str:
    return "yes" if flag else ""


def _date(moment: object) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment is not None else ""
