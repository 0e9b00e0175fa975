"""The ``kubernetes`` provider: software RSA keys kept as Secrets, one immutable Secret per version.

A version is a Secret in the vault's namespace with the labels ``videoanalyzer.io/key-name`` and
``videoanalyzer.io/key-version`` (a positive integer) and the PEM private key in ``key.pem``; the
annotation ``videoanalyzer.io/key-enabled: "false"`` disables it, and ``videoanalyzer.io/key-expires-on``
(RFC 3339) gives it an expiry date, after which it opens what it wrapped but wraps nothing new (as
Azure Key Vault's versions do). The highest enabled version is the
latest. Access is whatever RBAC grants the identity whose API client this provider was given: it
must be allowed to get and list Secrets in that namespace. This provider cannot observe soft-delete
or purge protection; the vault owner declares them in the KeyVault.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import math

import aiohttp
from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import conditions
from ..crypto import rsa
from . import base

LABEL_KEY_NAME = "videoanalyzer.io/key-name"
LABEL_KEY_VERSION = "videoanalyzer.io/key-version"
ANNOTATION_ENABLED = "videoanalyzer.io/key-enabled"
ANNOTATION_EXPIRES_ON = "videoanalyzer.io/key-expires-on"
DATA_KEY = "key.pem"

# The facts (type, size) of each version's key, by (namespace, Secret uid, resourceVersion): a
# provider lives for one check, which lists every version, and parsing a PEM costs 0.8 ms (2048
# bits) to 5.3 ms (4096) of CPU, so a key with 15 versions cost a tenant 12 to 80 ms every check.
# Facts only, no key material; a changed Secret has a new resourceVersion.
_facts: base.Bounded[tuple[str, str, str], rsa.KeyFacts] = base.Bounded("kubernetes-key-facts", limit=16384)


class KubernetesKeyProvider(base.KeyProvider):
    name = "kubernetes"

    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        identity: str,
        soft_delete: bool,
        purge_protection: bool,
        listing_seconds: float = math.inf,
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._namespace = namespace
        self._identity = identity
        self._properties = base.VaultProperties(soft_delete=soft_delete, purge_protection=purge_protection)
        # One listing per key for the provider's lifetime (a few seconds, see providerpool.ProviderPool):
        # wrap and unwrap, and the reconciliations of a rotation or of a lock, share it (or its refusal).
        # A long-lived instance (the platform's system key) lists again after ``listing_seconds``.
        self._pems: dict[tuple[str, str], bytes] = {}
        # The parsed key of each PEM: parsing one costs more than the wrap it serves (2% of the
        # operator's CPU while it provisioned 1,000 accounts, bench.provisioning --profile).
        self._parsed: dict[bytes, object] = {}
        self._listings: base.RecentReads[list[base.KeyVersion]] = base.RecentReads(seconds=listing_seconds)

    async def protection(self, key_name: str) -> base.VaultProperties:
        return self._properties

    async def versions(self, key_name: str) -> list[base.KeyVersion]:
        return await self._listings.get(key_name, lambda: self._read_versions(key_name))

    async def _read_versions(self, key_name: str) -> list[base.KeyVersion]:
        secrets = await self._list(key_name)
        versions = []
        for secret in secrets:
            version = (secret.metadata.labels or {}).get(LABEL_KEY_VERSION, "")
            if not version.isdigit() or int(version) < 1:
                continue  # not a version: the label must be a positive integer
            pem = base64.b64decode((secret.data or {}).get(DATA_KEY, ""))
            annotations = secret.metadata.annotations or {}
            enabled = annotations.get(ANNOTATION_ENABLED, "true").lower() != "false"
            expires_on, why = _expiry(annotations.get(ANNOTATION_EXPIRES_ON))
            enabled = enabled and not why
            self._pems[(key_name, version)] = pem
            facts = self._facts(secret, pem)
            versions.append(base.KeyVersion(key_name, version, facts, enabled, why, expires_on))
        if not versions:
            raise base.KeyNotFound(
                f"no Secret in namespace {self._namespace} carries the labels "
                f"{LABEL_KEY_NAME}={key_name} and {LABEL_KEY_VERSION}=<n>"
            )
        versions.sort(key=lambda v: int(v.version))
        return versions

    async def wrap(self, key: base.KeyVersion, plaintext: bytes) -> base.Wrapped:
        private = await self._private_key(key.name, key.version)
        # A public-key operation takes tens of microseconds: cheaper here than a hop to a thread.
        ciphertext = rsa.wrap(private.public_key(), plaintext)
        return base.Wrapped(ciphertext, rsa.RSA_OAEP_256, key.version)

    async def unwrap(self, key_name: str, version: str, ciphertext: bytes, *, algorithm: str) -> bytes:
        private = await self._private_key(key_name, version)
        try:
            # RSA private-key work takes milliseconds: keep it off the event loop.
            return await asyncio.to_thread(rsa.unwrap, private, ciphertext, algorithm=algorithm)
        except rsa.KeyMaterialError as error:
            raise base.UnwrapFailed(f"key {key_name!r} version {version}: {error}") from None

    async def _private_key(self, key_name: str, version: str) -> rsa_keys.RSAPrivateKey:
        listed = await self.versions(key_name)
        pem = self._pems.get((key_name, version))
        if pem is None:
            raise base.KeyVersionNotFound(f"key {key_name!r} has no version {version!r}")
        if any(v.version == version and not v.enabled for v in listed):
            # Disabled means unusable, for unwrapping too, as a disabled key version is in Key Vault.
            raise base.KeyDisabled(
                f"version {version} of key {key_name!r} is disabled; enable it to open what it wraps"
            )
        key = self._parse(pem)
        if not isinstance(key, rsa_keys.RSAPrivateKey):
            raise base.KeyUnsupported(f"key {key_name!r} version {version} is not an RSA key")
        return key

    def _facts(self, secret: client.V1Secret, pem: bytes) -> rsa.KeyFacts:
        known = (self._namespace, secret.metadata.uid or "", secret.metadata.resource_version or "")
        facts = _facts.get(known) if all(known) else None
        if facts is None:
            try:
                facts = rsa.facts(self._parse(pem))
            except rsa.KeyMaterialError:
                facts = rsa.KeyFacts(rsa.UNREADABLE, 0)
            if all(known):
                _facts.put(known, facts)
        return facts

    def _parse(self, pem: bytes) -> object:
        """The key a PEM holds, parsed once while the PEM is one of the versions listed."""
        key = self._parsed.get(pem)
        if key is None:
            key = rsa.load_private_key(pem)
            live = set(self._pems.values()) | {pem}
            self._parsed = {p: k for p, k in self._parsed.items() if p in live}
            self._parsed[pem] = key
        return key

    async def _list(self, key_name: str) -> list[client.V1Secret]:
        try:
            response = await self._core.list_namespaced_secret(
                self._namespace, label_selector=f"{LABEL_KEY_NAME}={key_name}"
            )
        except ApiException as error:
            if error.status == 401:
                raise base.CredentialsRejected(
                    f"the token of {self._identity} was not accepted (401): the ServiceAccount was "
                    "deleted, or made again under its name; make sure it exists"
                ) from None
            if error.status == 403:
                raise base.AccessDenied(
                    f"{self._identity} may not list Secrets in namespace {self._namespace}: create a Role "
                    f"there that allows get and list on secrets, and a RoleBinding of it to {self._identity}"
                ) from None
            if error.status == 404:
                raise base.VaultNotFound(f"namespace {self._namespace} does not exist") from None
            raise base.TransientError(f"listing key Secrets failed: {error.status} {error.reason}") from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise base.TransientError(
                f"the Kubernetes API did not answer: {error.__class__.__name__}"
            ) from None
        return list(response.items)


def _expiry(text: str | None) -> tuple[datetime.datetime | None, str]:
    """The expiry annotation's date, or why the version is disabled (a date that does not parse: a
    version whose lifetime nobody can tell is not used)."""
    if not text:
        return None, ""
    try:
        return conditions.parse_rfc3339(text), ""
    except ValueError:
        return None, f"its {ANNOTATION_EXPIRES_ON} annotation {text!r} is not an RFC 3339 date"
