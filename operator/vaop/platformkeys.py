"""The platform's own keys, made on first start in the operator's namespace and never made again.

- The **system key** (RSA-3072) wraps account keys of SystemKey accounts. It is stored exactly like a
  kubernetes-provider key (one immutable Secret per version), so the same provider serves it.
- The **infrastructure key** (AES-256) is the outer layer of every envelope. One Secret holds its
  versions (data keys "1", "2", ...) and names the current one in an annotation.

If either is missing while wrapped account keys exist, minting a new one would make every existing
envelope unopenable, so the operator refuses and says how to restore them instead.
"""

from __future__ import annotations

import base64
import logging
import os
from dataclasses import dataclass

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from . import kubeclient, labels
from .crypto import rsa
from .providers import base, instrumented
from .providers import kubernetes as kubernetes_provider

logger = logging.getLogger(__name__)

SYSTEM_KEY_NAME = "system-key"
SYSTEM_KEY_SIZE = 3072
INFRASTRUCTURE_SECRET = "vaop-infrastructure-key"  # noqa: S105 (a Secret's name, not a secret)
ANNOTATION_CURRENT = "videoanalyzer.io/current-version"


class PlatformKeyMissing(Exception):
    """Platform keys are gone although account keys wrapped by them exist."""


@dataclass(frozen=True)
class PlatformKeys:
    namespace: str
    system: base.KeyProvider
    infrastructure: dict[str, bytes]
    infrastructure_version: str

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

    return _keys(api, namespace, infrastructure)


async def load(api: client.ApiClient, namespace: str) -> PlatformKeys:
    """The platform keys as the leader made them, never making any (every replica's data API reads
    them); PlatformKeyMissing while they do not exist."""
    core = client.CoreV1Api(api)
    infrastructure = await kubeclient.read_secret_or_none(core, INFRASTRUCTURE_SECRET, namespace)
    if infrastructure is None:
        raise PlatformKeyMissing(
            f"the infrastructure key Secret {namespace}/{INFRASTRUCTURE_SECRET} does not exist"
        )
    return _keys(api, namespace, infrastructure)


async def infrastructure_versions(api: client.ApiClient, namespace: str) -> dict[str, bytes] | None:
    """The infrastructure key versions (version -> key), or None while they do not exist."""
    found = await kubeclient.read_secret_or_none(client.CoreV1Api(api), INFRASTRUCTURE_SECRET, namespace)
    return None if found is None else kubeclient.secret_data(found)


def _keys(api: client.ApiClient, namespace: str, infrastructure: client.V1Secret) -> PlatformKeys:
    versions = kubeclient.secret_data(infrastructure)
    current = (infrastructure.metadata.annotations or {}).get(ANNOTATION_CURRENT, "1")
    system = instrumented.Instrumented(
        kubernetes_provider.KubernetesKeyProvider(
            api, namespace=namespace, identity="the operator", soft_delete=True, purge_protection=True
        )
    )
    return PlatformKeys(namespace, system, versions, current)
