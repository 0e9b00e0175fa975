"""The platform's own keys, made on first start in the operator's namespace, rotated on a cryptoperiod
(or by ``vaop platform rotate``), and never made again from nothing.

- The **system key** (RSA-3072) wraps account keys of SystemKey accounts. It lives in the platform's
  root of trust (``platformroot``): Secrets in this namespace (``kubernetes``, one immutable Secret
  per version, served by the kubernetes provider), an OpenBao transit key or an HSM.
- The **infrastructure key** (AES-256) is the outer layer of every envelope. One Secret holds its
  versions (data keys "1", "2", ...) and names the current one in an annotation. With a
  ``kubernetes`` root a version is the key itself; with any other it is a record of the key wrapped
  by the system key, so etcd holds no platform key material.

If either is missing while wrapped account keys exist, minting a new one would make every existing
envelope unopenable, so the operator refuses and says how to restore them instead.

A rotation adds a version and makes it current (one write, conditional on what was read, so two
rotations never both happen); the leader then moves every envelope to it (the outer layer resealed,
a SystemKey account's key re-wrapped). Old versions stay until nothing uses them, and then a person
retires them (``vaop platform retire``), which refuses while any envelope still does.

Moving from the ``kubernetes`` root to another: the leader wraps every infrastructure key version
with the new root, adds a fresh version (the old ones were in etcd in the clear), and moves every
envelope; the system key Secrets stay readable (as versions "kubernetes/N") until retired.
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

from . import conditions, kubeclient, labels, platformroot
from .crypto import envelope, rsa
from .platformroot import PlatformKeyMissing
from .providers import base
from .providers import kubernetes as kubernetes_provider

logger = logging.getLogger(__name__)

SYSTEM_KEY_NAME = platformroot.KUBERNETES_KEY_NAME
SYSTEM_KEY_SIZE = 3072
INFRASTRUCTURE_SECRET = "vaop-infrastructure-key"  # noqa: S105 (a Secret's name, not a secret)
ANNOTATION_CURRENT = "videoanalyzer.io/current-version"
ANNOTATION_CURRENT_SINCE = "videoanalyzer.io/current-since"  # when the current version became current
ANNOTATION_ROOT = "videoanalyzer.io/root"  # the root that wraps the versions (absent: kubernetes)
ANNOTATION_SYSTEM_VERSION = "videoanalyzer.io/system-key-version"  # the root's current version
# Set by `vaop platform rotate infrastructure-key` when only the leader can wrap a new version.
ANNOTATION_ROTATION_REQUESTED = "videoanalyzer.io/rotation-requested"
INFRASTRUCTURE = "infrastructure-key"
SYSTEM = "system-key"


@dataclass(frozen=True)
class PlatformKeys:
    namespace: str
    root: platformroot.Root
    infrastructure: dict[str, bytes]
    infrastructure_version: str
    infrastructure_since: datetime.datetime | None = None  # when the current version became current
    system_version: str = "1"  # the root's newest system key version (the one that wraps)
    system_since: datetime.datetime | None = None  # None: the root's vault keeps the cryptoperiod
    former: platformroot.Root | None = None  # the kubernetes root moved from, for what it still holds
    rotation_requested: bool = False

    def versions(self) -> dict[str, str]:
        """The current version of each key, by key: what a rotation changes."""
        return {INFRASTRUCTURE: self.infrastructure_version, SYSTEM: self.system_version}

    def system_provider(self, kind: str) -> base.KeyProvider:
        """The provider of the root (current or former) a SystemKey envelope names."""
        for root in (self.root, self.former):
            if root is not None and root.kind == kind:
                return root.provider
        raise PlatformKeyMissing(
            f"the account key is wrapped by a system key in {kind}, but the operator uses {self.root.where}"
        )

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


async def _infrastructure_secret(namespace: str, root: platformroot.Root) -> client.V1Secret:
    stored, annotations = await _new_version(root)
    return client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=INFRASTRUCTURE_SECRET,
            namespace=namespace,
            labels={**labels.MANAGED, labels.COMPONENT: "platform-key"},
            annotations={ANNOTATION_CURRENT: "1", **annotations},
        ),
        type=labels.PLATFORM_KEY_SECRET_TYPE,
        data={"1": base64.b64encode(stored).decode()},
    )


async def _new_version(root: platformroot.Root) -> tuple[bytes, dict[str, str]]:
    """A new infrastructure key as stored, and the annotations that make it current."""
    stored = await root.store(os.urandom(platformroot.AES_KEY_BYTES))
    return stored, {ANNOTATION_CURRENT_SINCE: conditions.now_rfc3339(), **_root_annotations(root, stored)}


def _root_annotations(root: platformroot.Root, stored: bytes) -> dict[str, str]:
    wrapped = platformroot.WrappedKey.decode(stored)
    if wrapped is None:
        return {}
    return {ANNOTATION_ROOT: root.kind, ANNOTATION_SYSTEM_VERSION: wrapped.version}


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


async def load_or_create(
    api: client.ApiClient, namespace: str, root: platformroot.Root | None = None
) -> PlatformKeys:
    """Load the platform keys; make them only when they are absent and no account key exists yet.
    With a root other than kubernetes, versions found in the clear are wrapped first (``seal``)."""
    root = root or platformroot.kubernetes_root(api, namespace)
    core = client.CoreV1Api(api)
    if root.wraps_infrastructure:
        await root.current_version()  # the root answers, and holds the key, before anything
        system_missing = False
    else:
        system_missing = not await system_versions(core, namespace)
    infrastructure = await kubeclient.read_secret_or_none(core, INFRASTRUCTURE_SECRET, namespace)

    if system_missing or infrastructure is None:
        if await _account_keys_exist(core):
            missing = "the system key" if system_missing else ""
            if infrastructure is None:
                missing = f"{missing} and the infrastructure key" if missing else "the infrastructure key"
            raise PlatformKeyMissing(
                f"{missing} in namespace {namespace} are missing while wrapped account keys exist; "
                "new keys would not open them. Restore the Secrets labelled "
                f"{labels.COMPONENT}=platform-key from backup (docs/operations.md#restore-platform-keys)"
            )
        if system_missing:
            await _create_if_absent(core, namespace, _system_key_secret(namespace, 1))
        if infrastructure is None:
            await _create_if_absent(core, namespace, await _infrastructure_secret(namespace, root))
    await seal(api, namespace, root)
    return await load(api, namespace, root)


async def seal(api: client.ApiClient, namespace: str, root: platformroot.Root) -> None:
    """With a root that wraps: every infrastructure key version wrapped by the root's current system
    key version. A version found in the clear (the kubernetes root moved from) is wrapped, and a
    fresh version made current, since the old ones were readable in etcd. One conditional write."""
    if not root.wraps_infrastructure:
        return
    core = client.CoreV1Api(api)
    secret = await core.read_namespaced_secret(INFRASTRUCTURE_SECRET, namespace)
    current = await root.current_version()
    stored = kubeclient.secret_data(secret)
    resealed: dict[str, bytes] = {}
    for version, value in stored.items():
        wrapped = platformroot.WrappedKey.decode(value)
        if wrapped is not None and (wrapped.root, wrapped.key, wrapped.version) == (
            root.kind,
            root.key_name,
            current.version,
        ):
            continue
        resealed[version] = await root.store(await root.open(value))
    annotations = dict(secret.metadata.annotations or {})
    if any(platformroot.WrappedKey.decode(value) is None for value in stored.values()):
        new = str(max((int(v) for v in stored if v.isdigit()), default=0) + 1)
        resealed[new], made_current = await _new_version(root)
        annotations.update({ANNOTATION_CURRENT: new, **made_current})
        logger.info("Infrastructure key wrapped by %s; version %s made current", root.where, new)
    wanted = {ANNOTATION_ROOT: root.kind, ANNOTATION_SYSTEM_VERSION: current.version}
    if not resealed and all(annotations.get(k) == v for k, v in wanted.items()):
        return
    annotations.update(wanted)
    secret.data = {v: base64.b64encode(data).decode() for v, data in {**stored, **resealed}.items()}
    secret.metadata.annotations = annotations
    await core.replace_namespaced_secret(INFRASTRUCTURE_SECRET, namespace, secret)  # 409 if raced


async def load(api: client.ApiClient, namespace: str, root: platformroot.Root | None = None) -> PlatformKeys:
    """The platform keys as the leader made them, never making any (every replica's data API reads
    them); PlatformKeyMissing while they do not exist, RootUnavailable while the root fails."""
    root = root or platformroot.kubernetes_root(api, namespace)
    core = client.CoreV1Api(api)
    infrastructure = await kubeclient.read_secret_or_none(core, INFRASTRUCTURE_SECRET, namespace)
    if infrastructure is None:
        raise PlatformKeyMissing(
            f"the infrastructure key Secret {namespace}/{INFRASTRUCTURE_SECRET} does not exist"
        )
    return await _keys(api, namespace, infrastructure, root)


async def infrastructure_versions(
    api: client.ApiClient, namespace: str, root: platformroot.Root | None = None
) -> dict[str, bytes] | None:
    """The infrastructure key versions (version -> key), or None while they do not exist."""
    core = client.CoreV1Api(api)
    found = await kubeclient.read_secret_or_none(core, INFRASTRUCTURE_SECRET, namespace)
    if found is None:
        return None
    root = root or platformroot.kubernetes_root(api, namespace)
    return {v: await root.open(stored) for v, stored in kubeclient.secret_data(found).items()}


@dataclass(frozen=True)
class Stored:
    """The infrastructure key Secret as anyone permitted to read it sees it (no root needed)."""

    versions: list[str]
    current: str
    since: datetime.datetime | None
    root: str  # the kind of root that wraps the versions
    system_version: str | None  # the root's current version (a kubernetes root: None, see Secrets)
    rotation_requested: bool

    @classmethod
    def of(cls, secret: client.V1Secret) -> Stored:
        annotations = secret.metadata.annotations or {}
        since = _parse_time(annotations.get(ANNOTATION_CURRENT_SINCE)) or secret.metadata.creation_timestamp
        requested = _parse_time(annotations.get(ANNOTATION_ROTATION_REQUESTED))
        return cls(
            versions=sorted((v for v in (secret.data or {}) if v.isdigit()), key=int),
            current=annotations.get(ANNOTATION_CURRENT, "1"),
            since=since,
            root=annotations.get(ANNOTATION_ROOT, platformroot.KUBERNETES),
            system_version=annotations.get(ANNOTATION_SYSTEM_VERSION),
            rotation_requested=requested is not None and (since is None or requested > since),
        )


async def stored(api: client.ApiClient, namespace: str) -> Stored:
    core = client.CoreV1Api(api)
    return Stored.of(await core.read_namespaced_secret(INFRASTRUCTURE_SECRET, namespace))


async def _keys(
    api: client.ApiClient, namespace: str, infrastructure: client.V1Secret, root: platformroot.Root
) -> PlatformKeys:
    found = Stored.of(infrastructure)
    if not root.wraps_infrastructure:
        # A provider of its own for each load: a kept one lists versions once per 5 s, and the
        # accounts must see the new version as soon as the leader moves them onto it.
        root = platformroot.kubernetes_root(api, namespace)
    versions = {v: await root.open(data) for v, data in kubeclient.secret_data(infrastructure).items()}
    if root.wraps_infrastructure:
        system_version, system_since = (await root.current_version()).version, None
        former: platformroot.Root | None = platformroot.kubernetes_root(api, namespace)
    else:
        newest = (await system_versions(client.CoreV1Api(api), namespace))[-1:]
        system_version, system_since = (
            (str(newest[0][0]), newest[0][1].metadata.creation_timestamp) if newest else ("1", None)
        )
        former = None
    return PlatformKeys(
        namespace,
        root,
        versions,
        found.current,
        found.since,
        system_version,
        system_since,
        former,
        found.rotation_requested,
    )


def _parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return conditions.parse_rfc3339(text)
    except ValueError:
        return None


async def system_versions(core: client.CoreV1Api, namespace: str) -> list[tuple[int, client.V1Secret]]:
    """The system key's version Secrets (a kubernetes root's), oldest first."""
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


async def rotate_infrastructure(
    api: client.ApiClient, namespace: str, root: platformroot.Root | None = None
) -> str:
    """Add an infrastructure key version and make it current; its number. Conditional on the Secret
    as read (a concurrent rotation makes this one fail with 409 instead of both happening)."""
    root = root or platformroot.kubernetes_root(api, namespace)
    core = client.CoreV1Api(api)
    secret = await core.read_namespaced_secret(INFRASTRUCTURE_SECRET, namespace)
    new = str(max((int(v) for v in (secret.data or {}) if v.isdigit()), default=0) + 1)
    made, annotations = await _new_version(root)
    secret.data = {**(secret.data or {}), new: base64.b64encode(made).decode()}
    kept = {
        k: v for k, v in (secret.metadata.annotations or {}).items() if k != ANNOTATION_ROTATION_REQUESTED
    }
    secret.metadata.annotations = {**kept, ANNOTATION_CURRENT: new, **annotations}
    await core.replace_namespaced_secret(INFRASTRUCTURE_SECRET, namespace, secret)
    logger.info("Infrastructure key version %s made current", new)
    return new


async def request_infrastructure_rotation(api: client.ApiClient, namespace: str) -> None:
    """Ask the leader for a new infrastructure key version (only it can wrap one with the root)."""
    patch = {"metadata": {"annotations": {ANNOTATION_ROTATION_REQUESTED: conditions.now_rfc3339()}}}
    await client.CoreV1Api(api).patch_namespaced_secret(INFRASTRUCTURE_SECRET, namespace, patch)


async def rotate_system(api: client.ApiClient, namespace: str) -> str:
    """Add a system key version to a kubernetes root (the newest wraps); its number. Two rotations
    at once: one wins (409)."""
    core = client.CoreV1Api(api)
    existing = await system_versions(core, namespace)
    new = (existing[-1][0] if existing else 0) + 1
    await core.create_namespaced_secret(namespace, _system_key_secret(namespace, new))
    logger.info("System key version %s made", new)
    return str(new)


def due(keys: PlatformKeys, *, infrastructure_days: float, system_days: float) -> list[str]:
    """The keys whose current version is older than its cryptoperiod (0 days: never rotated), or
    whose rotation was asked for. A system key outside kubernetes rotates in its vault."""
    now = datetime.datetime.now(datetime.UTC)
    found = [INFRASTRUCTURE] if keys.rotation_requested else []
    for key, since, days in (
        (INFRASTRUCTURE, keys.infrastructure_since, infrastructure_days),
        (SYSTEM, keys.system_since, system_days),
    ):
        overdue = days > 0 and since is not None and now - since >= datetime.timedelta(days=days)
        if overdue and key not in found:
            found.append(key)
    return found


def all_current(counted: collections.Counter[tuple[str, str]], keys: PlatformKeys) -> bool:
    """No envelope on any version but the current ones."""
    current = keys.versions()
    return all(version == current[key] for (key, version), count in counted.items() if count)


def system_label(provider: str, version: str, root: str = platformroot.KUBERNETES) -> str:
    """A system key version as status and metrics name it: "3" for the root's, "kubernetes/1" for
    a version of a root moved from."""
    return version if provider == root else f"{provider}/{version}"


def usage(
    envelopes: Iterable[envelope.Envelope], root: str = platformroot.KUBERNETES
) -> collections.Counter[tuple[str, str]]:
    """How many envelopes use each (key, version): every outer layer, and the inner wrap of SystemKey
    accounts."""
    counted: collections.Counter[tuple[str, str]] = collections.Counter()
    for sealed in envelopes:
        counted[(INFRASTRUCTURE, sealed.outer_key_version)] += 1
        if sealed.inner.type == "SystemKey":
            counted[(SYSTEM, system_label(sealed.inner.provider, sealed.inner.key_version, root))] += 1
    return counted
