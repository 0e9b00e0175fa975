"""The platform's root of trust: where the system key lives (chart value ``platformKeys.provider``).

- ``kubernetes``: the system key is a set of Secrets in the operator's namespace (the embedded
  default). Whoever reads etcd, or a backup of it, reads the platform keys.
- ``openbao``: an RSA key in OpenBao's transit engine, used as the operator's ServiceAccount (the
  Kubernetes auth method), never leaving the vault.
- ``pkcs11``: an RSA key pair inside an HSM token, never leaving it.

With the last two the infrastructure key is stored only wrapped by the system key (``WrappedKey``,
``Root.store`` and ``Root.open``), so an etcd dump holds no platform key material. The root's key
is made by the platform team in its vault (the operator is granted use of it, not its management),
and rotated there: OpenBao's transit ``auto_rotate_period``, or a new key pair in the HSM; the
operator sees each new version within a check interval and moves every envelope onto it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from kubernetes_asyncio import client

from . import config
from .providers import base, instrumented, openbao
from .providers import kubernetes as kubernetes_provider

KUBERNETES = "kubernetes"
KUBERNETES_KEY_NAME = "system-key"
# The operator's own ServiceAccount token, as a Pod mounts it (kubelet renews the file).
T = TypeVar("T")
POD_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 (a path)


class PlatformKeyMissing(Exception):
    """Platform keys are gone although account keys wrapped by them exist."""


class RootUnavailable(PlatformKeyMissing):
    """The root of trust (OpenBao, the HSM) cannot be used now: the operator waits, not ready."""


AES_KEY_BYTES = 32  # an infrastructure key


@dataclass(frozen=True)
class WrappedKey:
    """An infrastructure key version as a root other than ``kubernetes`` stores it: wrapped by the
    system key version named here, so etcd holds no platform key material."""

    root: str
    key: str
    version: str
    algorithm: str
    ciphertext: bytes

    def encode(self) -> bytes:
        record = {
            "root": self.root,
            "key": self.key,
            "version": self.version,
            "algorithm": self.algorithm,
            "ciphertext": base64.b64encode(self.ciphertext).decode(),
        }
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, stored: bytes) -> WrappedKey | None:
        """The record, or None for a version stored in the clear (a kubernetes root's)."""
        if len(stored) == AES_KEY_BYTES:
            return None
        try:
            record = json.loads(stored)
            return cls(
                str(record["root"]),
                str(record["key"]),
                str(record["version"]),
                str(record["algorithm"]),
                base64.b64decode(record["ciphertext"]),
            )
        except (ValueError, KeyError, TypeError):
            raise PlatformKeyMissing(
                "the infrastructure key's Secret holds a version that is neither a key nor a wrapped key"
            ) from None


# Opened versions, by a digest of the stored record: a root is asked once per version and process.
_opened: dict[bytes, bytes] = {}


@dataclass(frozen=True)
class Root:
    """The system key's home: one provider and one key name."""

    kind: str  # the provider's name, recorded in every SystemKey envelope
    key_name: str
    provider: base.KeyProvider
    where: str  # for messages: "token 'platform' of /usr/lib/softhsm/libsofthsm2.so"
    how_to_make: str  # what the platform team runs to make (or restore) the key

    @property
    def wraps_infrastructure(self) -> bool:
        """The infrastructure key is stored wrapped by this root (not in the clear in a Secret)."""
        return self.kind != KUBERNETES

    def unusable(self, error: base.ProviderError) -> str:
        """A message for readiness and logs: what failed, where, and what to do."""
        if isinstance(error, base.KeyNotFound | base.KeyVersionNotFound):
            return f"the system key {self.key_name!r} is not in {self.where}: {error}. {self.how_to_make}"
        return f"the platform keys' root ({self.where}) cannot be used: {error}"

    async def current_version(self) -> base.KeyVersion:
        """The system key's newest version; ``RootUnavailable`` when the root does not answer."""
        try:
            return await self.provider.resolve(self.key_name, None)
        except base.ProviderError as error:
            raise RootUnavailable(self.unusable(error)) from None

    async def store(self, key: bytes) -> bytes:
        """How an infrastructure key is stored under this root: itself (kubernetes), or wrapped by
        the system key's current version."""
        if not self.wraps_infrastructure:
            return key
        current = await self.current_version()
        try:
            wrapped = await self.provider.wrap(current, key)
        except base.ProviderError as error:
            raise RootUnavailable(self.unusable(error)) from None
        return WrappedKey(
            self.kind, self.key_name, current.version, wrapped.algorithm, wrapped.ciphertext
        ).encode()

    async def open(self, stored: bytes) -> bytes:
        """The infrastructure key ``stored`` holds (unwrapped by this root once per process)."""
        wrapped = WrappedKey.decode(stored)
        if wrapped is None:
            return stored
        digest = hashlib.sha256(stored).digest()
        if digest not in _opened:
            if wrapped.root != self.kind:
                raise PlatformKeyMissing(
                    f"the infrastructure key is wrapped by a {wrapped.root} root, but the operator uses "
                    f"{self.where}; set platformKeys.provider back to {wrapped.root}"
                )
            try:
                key = await self.provider.unwrap(
                    wrapped.key, wrapped.version, wrapped.ciphertext, algorithm=wrapped.algorithm
                )
            except base.ProviderError as error:
                raise RootUnavailable(self.unusable(error)) from None
            _opened[digest] = key
        return _opened[digest]


def kubernetes_root(api: client.ApiClient, namespace: str) -> Root:
    """The system key as Secrets in the operator's namespace (one immutable Secret per version)."""
    provider = kubernetes_provider.KubernetesKeyProvider(
        api,
        namespace=namespace,
        identity="the operator",
        soft_delete=True,
        purge_protection=True,
        listing_seconds=5.0,  # kept for the process's life: a new system key version shows within 5 s
    )
    return Root(
        KUBERNETES,
        KUBERNETES_KEY_NAME,
        instrumented.Instrumented(provider),
        f"Secrets of namespace {namespace}",
        "Restore the Secrets labelled videoanalyzer.io/component=platform-key from backup",
    )


def from_config(options: config.OperatorConfig, api: client.ApiClient) -> Root:
    """The root the chart chose; ``kubernetes`` by default."""
    kind = options.platform_keys_provider
    if kind == "openbao":
        return _openbao_root(options)
    if kind == "pkcs11":
        return _pkcs11_root(options)
    return kubernetes_root(api, options.namespace)


def _openbao_root(options: config.OperatorConfig) -> Root:
    address = options.platform_openbao_address or ""
    mount = options.platform_openbao_transit_mount

    def provider(service_account_token: str) -> base.KeyProvider:
        return openbao.OpenBaoKeyProvider(
            address=address,
            transit_mount=mount,
            auth_mount=options.platform_openbao_auth_mount,
            role=options.platform_openbao_role,
            service_account_token=service_account_token,
            identity="the operator",
            ca_bundle=options.platform_openbao_ca_bundle or None,
            addresses=None,  # the platform's own vault, named by the platform team
        )

    key = options.platform_key_name
    return Root(
        "openbao",
        key,
        instrumented.Instrumented(_PerToken(provider, Path(options.platform_openbao_token_file))),
        f"OpenBao {address} (transit mount {mount})",
        f"Make it there: bao write {mount}/keys/{key} type=rsa-3072 auto_rotate_period=8760h, then "
        f"bao write {mount}/keys/{key}/config deletion_allowed=false",
    )


def _pkcs11_root(options: config.OperatorConfig) -> Root:
    module = options.platform_pkcs11_module or ""
    token = options.platform_pkcs11_token_label or ""
    pin = options.platform_pkcs11_pin.get_secret_value() if options.platform_pkcs11_pin else ""
    key = options.platform_key_name
    from .providers import pkcs11  # an optional extra (config checked it is installed)

    provider = pkcs11.Pkcs11KeyProvider(module=module, token_label=token, pin=pin, identity="the operator")
    return Root(
        "pkcs11",
        key,
        instrumented.Instrumented(provider),
        f"token {token!r} of PKCS#11 module {module}",
        f"Make it there: pkcs11-tool --module {module} --token-label {token} --login --keypairgen "
        f"--key-type rsa:3072 --label {key} --id 01 (a new version: the same label, the next id)",
    )


class _PerToken(base.KeyProvider):
    """The OpenBao provider for the token in a file, made anew when the file changes (the kubelet
    renews a projected token; an old one would stop logging in)."""

    name = "openbao"

    def __init__(self, make: Callable[[str], base.KeyProvider], token_file: Path) -> None:
        self._make = make
        self._token_file = token_file
        self._current: tuple[str, base.KeyProvider] | None = None

    async def _provider(self) -> base.KeyProvider:
        token = self._token_file.read_text().strip()
        if self._current is None or self._current[0] != token:
            previous, self._current = self._current, (token, self._make(token))
            if previous is not None:
                await previous[1].close()
        return self._current[1]

    async def protection(self, key_name: str) -> base.VaultProperties:
        return await self._read(lambda provider: provider.protection(key_name))

    async def versions(self, key_name: str) -> list[base.KeyVersion]:
        return await self._read(lambda provider: provider.versions(key_name))

    async def _read(self, call: Callable[[base.KeyProvider], Awaitable[T]]) -> T:
        """Key metadata through a provider of its own: a provider keeps what it read of a key for
        its life, and this one lives long; a new version must show within a check interval."""
        provider = self._make(self._token_file.read_text().strip())
        try:
            return await call(provider)
        finally:
            await provider.close()

    async def wrap(self, key: base.KeyVersion, plaintext: bytes) -> base.Wrapped:
        return await (await self._provider()).wrap(key, plaintext)

    async def unwrap(self, key_name: str, version: str, ciphertext: bytes, *, algorithm: str) -> bytes:
        return await (await self._provider()).unwrap(key_name, version, ciphertext, algorithm=algorithm)

    async def close(self) -> None:
        if self._current is not None:
            await self._current[1].close()
