"""The platform's own keys, made on first start in the operator's namespace, rotated on a cryptoperiod
(or by ``vaop platform rotate``), and never made again from nothing.

- The **system key** (RSA-3072) wraps account keys of SystemKey accounts. It is stored exactly like a
  kubernetes-provider key (one immutable Secret per version), so the same provider serves it.
- The **infrastructure key** (AES-256) is the outer layer of every envelope. One Secret holds its
  versions (data keys "1", "2", ...) and names the current one in an annotation.

If either is missing while wrapped account keys exist, minting a new one would make every existing
envelope unopenable, so the operator refuses and says how to restore them instead.

A rotation adds a version and makes it current (one write, conditional on what was read, so two
rotations never both happen); the leader then moves every envelope to it (the outer layer resealed,
a SystemKey account's key re-wrapped). Old versions stay until nothing uses them, and then a person
retires them (``vaop platform retire``), which refuses while any envelope still does.
"""

from __future__ import annotations

import base64
import collections
import datetime
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from . import conditions, kubeclient, labels
from .crypto import envelope, rsa
from .providers import base, instrumented
from .providers import kubernetes as kubernetes_provider

logger = logging.getLogger(__name__)

SYSTEM_KEY_NAME = "system-key"
SYSTEM_KEY_SIZE = 3072
INFRASTRUCTURE_SECRET = "vaop-infrastructure-key"  # noqa: S105 (a Secret's name, not a secret)
ANNOTATION_CURRENT = "videoanalyzer.io/current-version"
ANNOTATION_CURRENT_SINCE = "videoanalyzer.io/current-since"  # when the current version became current
INFRASTRUCTURE = "infrastructure-key"
SYSTEM = "system-key"


class PlatformKeyMissing(Exception):
    """Platform keys are gone although account keys wrapped by them exist."""


@dataclass(frozen=True)
class PlatformKeys:
    namespace: str
    system: base.KeyProvider
    infrastructure: dict[str, bytes]
    infrastructure_version: str
    infrastructure_since: datetime.datetime | None = None  # when the current version became current
    system_version: str = "1"  # the newest system key version (the one that wraps)
    system_since: datetime.datetime | None = None

    def versions(self) -> dict[str, str]:
        """The current version of each key, by key: what a rotation changes."""
        return {INFRASTRUCTURE: self.infrastructure_version, SYSTEM: self.system_version}

    def infrastructure_key(self, version: str) -> bytes:
        try:
            return self.infrastructure[version]
        except KeyError:
            raise PlatformKeyMissing(
                f"infrastructure key version {version} is not in Secret "
                f"{self.namespace}/{INFRASTRUCTURE_SECRET}"
            ) from None


def _system_key_secret(namespace: str, version: int) -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=f"vaop-system-key-v{version}",
            namespace=namespace,
            labels={
                **labels.MANAGED,
                kubernetes_provider.LABEL_KEY_NAME: SYSTEM_KEY_NAME,
                kubernetes_provider.LABEL_KEY_VERSION: str(version),
                labels.COMPONENT: "platform-key",
            },
        ),
        type=labels.PLATFORM_KEY_SECRET_TYPE,
        immutable=True,
        data={kubernetes_provider.DATA_KEY: base64.b64encode(rsa.generate(SYSTEM_KEY_SIZE)).decode()},
    )


def _infrastructure_secret(namespace: str) -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=INFRASTRUCTURE_SECRET,
            namespace=namespace,
            labels={**labels.MANAGED, labels.COMPONENT: "platform-key"},
            annotations={ANNOTATION_CURRENT: "1"},
        ),
        type=labels.PLATFORM_KEY_SECRET_TYPE,
        data={"1": base64.b64encode(os.urandom(32)).decode()},
    )


async def _account_keys_exist(core: client.CoreV1Api) -> bool:
    found = await core.list_secret_for_all_namespaces(label_selector=labels.ACCOUNT_KEY_SELECTOR, limit=1)
    return bool(found.items)


async def _create_if_absent(core: client.CoreV1Api, namespace: str, secret: client.V1Secret) -> None:
    try:
        await core.create_namespaced_secret(namespace, secret)
        logger.info("Created platform key Secret %s/%s", namespace, secret.metadata.name)
    except ApiException as error:
        if error.status != 409:  # 409: another replica made it first, which is as good
            raise


async def load_or_create(api: client.ApiClient, namespace: str) -> PlatformKeys:
    """Load the platform keys; make them only when they are absent and no account key exists yet."""
    core = client.CoreV1Api(api)
    system_versions = await core.list_namespaced_secret(
        namespace, label_selector=f"{kubernetes_provider.LABEL_KEY_NAME}={SYSTEM_KEY_NAME}"
    )
    infrastructure = await kubeclient.read_secret_or_none(core, INFRASTRUCTURE_SECRET, namespace)

    if not system_versions.items or infrastructure is None:
        if await _account_keys_exist(core):
            missing = "the system key" if not system_versions.items else ""
            if infrastructure is None:
                missing = f"{missing} and the infrastructure key" if missing else "the infrastructure key"
            raise PlatformKeyMissing(
                f"{missing} in namespace {namespace} are missing while wrapped account keys exist; "
                "new keys would not open them. Restore the Secrets labelled "
                f"{labels.COMPONENT}=platform-key from backup (docs/operations.md#restore-platform-keys)"
            )
        if not system_versions.items:
            await _create_if_absent(core, namespace, _system_key_secret(namespace, 1))
        if infrastructure is None:
            await _create_if_absent(core, namespace, _infrastructure_secret(namespace))
        infrastructure = await core.read_namespaced_secret(INFRASTRUCTURE_SECRET, namespace)

    return await _keys(api, namespace, infrastructure)


async def load(api: client.ApiClient, namespace: str) -> PlatformKeys:
    """The platform keys as the leader made them, never making any (every replica's data API reads
    them); PlatformKeyMissing while they do not exist."""
    core = client.CoreV1Api(api)
    infrastructure = await kubeclient.read_secret_or_none(core, INFRASTRUCTURE_SECRET, namespace)
    if infrastructure is None:
        raise PlatformKeyMissing(
            f"the infrastructure key Secret {namespace}/{INFRASTRUCTURE_SECRET} does not exist"
        )
    return await _keys(api, namespace, infrastructure)


async def infrastructure_versions(api: client.ApiClient, namespace: str) -> dict[str, bytes] | None:
    """The infrastructure key versions (version -> key), or None while they do not exist."""
    found = await kubeclient.read_secret_or_none(client.CoreV1Api(api), INFRASTRUCTURE_SECRET, namespace)
    return None if found is None else kubeclient.secret_data(found)


async def _keys(api: client.ApiClient, namespace: str, infrastructure: client.V1Secret) -> PlatformKeys:
    versions = kubeclient.secret_data(infrastructure)
    annotations = infrastructure.metadata.annotations or {}
    current = annotations.get(ANNOTATION_CURRENT, "1")
    since = (
        _parse_time(annotations.get(ANNOTATION_CURRENT_SINCE)) or infrastructure.metadata.creation_timestamp
    )
    system = instrumented.Instrumented(
        kubernetes_provider.KubernetesKeyProvider(
            api,
            namespace=namespace,
            identity="the operator",
            soft_delete=True,
            purge_protection=True,
            listing_seconds=5.0,  # kept for the process's life: a new system key version shows within 5 s
        )
    )
    newest = (await system_versions(client.CoreV1Api(api), namespace))[-1:]
    system_version, system_since = (
        (newest[0][0], newest[0][1].metadata.creation_timestamp) if newest else ("1", None)
    )
    return PlatformKeys(namespace, system, versions, current, since, str(system_version), system_since)


def _parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return conditions.parse_rfc3339(text)
    except ValueError:
        return None


async def system_versions(core: client.CoreV1Api, namespace: str) -> list[tuple[int, client.V1Secret]]:
    """The system key's version Secrets, oldest first."""
    found = await core.list_namespaced_secret(
        namespace, label_selector=f"{kubernetes_provider.LABEL_KEY_NAME}={SYSTEM_KEY_NAME}"
    )
    numbered = [
        (int(v), secret)
        for secret in found.items
        if (v := (secret.metadata.labels or {}).get(kubernetes_provider.LABEL_KEY_VERSION, "")).isdigit()
    ]
    return sorted(numbered, key=lambda item: item[0])


# ---- rotation ---------------------------------------------------------------------------------


async def rotate_infrastructure(api: client.ApiClient, namespace: str) -> str:
    """Add an infrastructure key version and make it current; its number. Conditional on the Secret
    as read (a concurrent rotation makes this one fail with 409 instead of both happening)."""
    core = client.CoreV1Api(api)
    secret = await core.read_namespaced_secret(INFRASTRUCTURE_SECRET, namespace)
    new = str(max((int(v) for v in (secret.data or {}) if v.isdigit()), default=0) + 1)
    secret.data = {**(secret.data or {}), new: base64.b64encode(os.urandom(32)).decode()}
    secret.metadata.annotations = {
        **(secret.metadata.annotations or {}),
        ANNOTATION_CURRENT: new,
        ANNOTATION_CURRENT_SINCE: conditions.now_rfc3339(),
    }
    await core.replace_namespaced_secret(INFRASTRUCTURE_SECRET, namespace, secret)
    logger.info("Infrastructure key version %s made current", new)
    return new


async def rotate_system(api: client.ApiClient, namespace: str) -> str:
    """Add a system key version (the newest wraps); its number. Two rotations at once: one wins (409)."""
    core = client.CoreV1Api(api)
    existing = await system_versions(core, namespace)
    new = (existing[-1][0] if existing else 0) + 1
    await core.create_namespaced_secret(namespace, _system_key_secret(namespace, new))
    logger.info("System key version %s made", new)
    return str(new)


def due(keys: PlatformKeys, *, infrastructure_days: float, system_days: float) -> list[str]:
    """The keys whose current version is older than its cryptoperiod (0 days: never rotated)."""
    now = datetime.datetime.now(datetime.UTC)
    found = []
    for key, since, days in (
        (INFRASTRUCTURE, keys.infrastructure_since, infrastructure_days),
        (SYSTEM, keys.system_since, system_days),
    ):
        if days > 0 and since is not None and now - since >= datetime.timedelta(days=days):
            found.append(key)
    return found


def usage(envelopes: Iterable[envelope.Envelope]) -> collections.Counter[tuple[str, str]]:
    """How many envelopes use each (key, version): every outer layer, and the inner wrap of SystemKey
    accounts."""
    counted: collections.Counter[tuple[str, str]] = collections.Counter()
    for sealed in envelopes:
        counted[(INFRASTRUCTURE, sealed.outer_key_version)] += 1
        if sealed.inner.type == "SystemKey":
            counted[(SYSTEM, sealed.inner.key_version)] += 1
    return counted
