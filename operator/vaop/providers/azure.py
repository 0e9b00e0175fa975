"""The ``azureKeyVault`` provider: RSA keys in Azure Key Vault (and Managed HSM, which shares its keys API).

Identity is workload identity federation: the operator mints a token of the account's ServiceAccount
for the audience ``api://AzureADTokenExchange``; Microsoft Entra ID takes it as a client assertion for
the app registration ``clientID`` (whose federated credential names that ServiceAccount) and returns a
vault access token. The vault's own RBAC then decides: "Key Vault Crypto Service Encryption User"
grants exactly what this provider uses (keys get, wrapKey, unwrapKey).

Reported: key type (RSA, RSA-HSM, EC, ...) and size from each version's public key; a version is
enabled when its attributes say so and its not-before date has passed; past its expiry date it still
unwraps (as Key Vault allows) but wraps nothing new, so accounts move at the next version; the key's
``recoveryLevel`` gives soft-delete (anything but ``Purgeable``) and purge protection (a level without
``Purgeable``). Keys are named without a version (versionless identifiers): the newest enabled version
wraps. Wrap is RSA-OAEP-256 with the exact version's public key (the SDK does it locally, checking the
version's validity dates); unwrap is ``unwrapKey`` in the vault. Azure has no re-wrap operation, so a
rotation unwraps with the old version and wraps with the new one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import aiohttp
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.pipeline.transport import AioHttpTransport
from azure.identity.aio import ClientAssertionCredential
from azure.keyvault.keys import KeyProperties, KeyVaultKey
from azure.keyvault.keys.aio import KeyClient
from azure.keyvault.keys.crypto import KeyWrapAlgorithm
from azure.keyvault.keys.crypto.aio import CryptographyClient

from .. import metrics
from ..crypto import rsa
from . import addresses as addresses_policy
from . import base

TOKEN_AUDIENCE = "api://AzureADTokenExchange"  # noqa: S105 (the audience Entra ID expects, not a secret)
# Where AKS workload identity keeps an identity's app registration: used when the KeyVault names none.
CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id"
TENANT_ID_ANNOTATION = "azure.workload.identity/tenant-id"
_ALGORITHMS = {rsa.RSA_OAEP_256: KeyWrapAlgorithm.rsa_oaep_256, rsa.RSA_OAEP_SHA1: KeyWrapAlgorithm.rsa_oaep}
_UNKNOWN = rsa.KeyFacts("unknown", 0)
_EC_SIZES = {"P-256": 256, "P-256K": 256, "P-384": 384, "P-521": 521}
# Every attempt is short and retried once: the operator's own grace period handles longer outages.
_CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 1, "connection_timeout": 5, "read_timeout": 10}

# Azure's SDK logs each request at INFO; requests never carry key material, but they are noise.
logging.getLogger("azure").setLevel(logging.WARNING)


@dataclass
class _Connection:
    """One vault as one identity: an HTTP session, a credential that caches its access token, and
    the latest ServiceAccount token it trades in. Kept across reconciliations so a check of many
    accounts costs vault calls, not token exchanges."""

    session: aiohttp.ClientSession
    transport: AioHttpTransport
    credential: ClientAssertionCredential
    keys: KeyClient
    assertion: str


_connections: dict[tuple[object, ...], _Connection] = {}  # oldest first
_MAX_CONNECTIONS = 256
metrics.CACHE_ENTRIES.labels("azure-connections").set_function(lambda: len(_connections))
# Version listings by (vault, app, identity, key name), shared for a moment between reconciliations.
_listings: base.RecentReads[list[KeyProperties]] = base.RecentReads(name="azure-listings")
# Each exact version's public key and its facts (type, size), by versioned key id: key material never
# changes, so a check of many accounts reads one listing per key, not one key per version. Public keys
# only, so sharing them across identities grants nothing: each identity still lists the key and
# unwraps with its own token.
_facts: base.Bounded[str, tuple[rsa.KeyFacts, KeyVaultKey]] = base.Bounded("azure-key-facts", limit=16384)


class _CountRequests(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Counts every HTTP request into vaop_vault_requests_total{provider="azureKeyVault"}."""

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        path = urlparse(request.http_request.url).path.rstrip("/")
        endpoint = "token" if path.endswith("/token") else path.rsplit("/", 1)[-1]
        if endpoint not in ("token", "wrapkey", "unwrapkey", "versions"):
            endpoint = "keys"
        metrics.VAULT_REQUESTS.labels(AzureKeyVaultProvider.name, endpoint).inc()


async def connection(
    *,
    vault_url: str,
    tenant_id: str,
    client_id: str,
    authority: str,
    ca_bundle: str | None,
    identity: str,
    service_account_token: str,
    addresses: addresses_policy.AddressPolicy | None,
) -> _Connection:
    """The cached connection for this vault and identity, given the identity's newest token."""
    loop = asyncio.get_running_loop()
    key = (loop, vault_url, tenant_id, client_id, authority, ca_bundle, identity, addresses)
    cached = _connections.pop(key, None)
    if cached is not None and not cached.session.closed:
        cached.assertion = service_account_token
        _connections[key] = cached  # now the most recently used
        return cached
    # Both the vault and Entra ID (authorityHost) are reached through the platform's address policy.
    connector = addresses_policy.connector(addresses, tls=base.tls_context(ca_bundle))
    session = aiohttp.ClientSession(connector=connector)
    transport = AioHttpTransport(session=session, session_owner=False)
    options = {**_CLIENT_OPTIONS, "transport": transport, "per_retry_policies": [_CountRequests()]}
    made: _Connection
    credential = ClientAssertionCredential(
        tenant_id, client_id, lambda: made.assertion, authority=authority, **options
    )
    keys = KeyClient(vault_url, credential, **options)
    made = _Connection(session, transport, credential, keys, service_account_token)
    _connections[key] = made
    base.close_at_shutdown(close_all)
    while len(_connections) > _MAX_CONNECTIONS:  # vaults or identities that went away
        await _close(_connections.pop(next(iter(_connections))))
    return made


async def probe(
    vault_url: str, *, ca_bundle: str | None, policy: addresses_policy.AddressPolicy | None
) -> None:
    """Reach the vault without credentials: a Key Vault answers an anonymous request with a 401 and a
    Bearer challenge. Raises when nothing, or something else, answers at ``vault_url``."""
    url = f"{vault_url.rstrip('/')}/keys?api-version=7.5"
    connector = addresses_policy.connector(policy, tls=base.tls_context(ca_bundle))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), connector=connector) as session:
        try:
            async with session.get(url) as response:
                status, challenge = response.status, response.headers.get("WWW-Authenticate", "")
        except (aiohttp.ClientError, TimeoutError) as error:
            raise base.TransientError(
                f"Azure Key Vault {vault_url} did not answer ({error.__class__.__name__})"
            ) from None
    if status == 401 and challenge.lower().startswith("bearer"):
        return
    if status == 429 or status >= 500:
        raise base.TransientError(f"Azure Key Vault {vault_url} answered HTTP {status}")
    raise base.VaultNotFound(
        f"{vault_url} did not answer as an Azure Key Vault (HTTP {status}, no Bearer challenge); set "
        "vaultURL to the vault's own URL, as `az keyvault show --query properties.vaultUri` prints it"
    )


async def close_all() -> None:
    while _connections:
        await _close(_connections.popitem()[1])


async def _close(connection: _Connection) -> None:
    await connection.keys.close()
    await connection.credential.close()
    await connection.session.close()


class AzureKeyVaultProvider(base.KeyProvider):
    name = "azureKeyVault"

    def __init__(self, connection: _Connection, *, vault_url: str, client_id: str, identity: str) -> None:
        self._connection = connection
        self.vault_url = vault_url.rstrip("/")
        self.identity = identity
        self._client_id = client_id
        self.access_hint = (
            f"give the app registration {client_id} a federated credential for {identity} (audience "
            f"{TOKEN_AUDIENCE}) and the role 'Key Vault Crypto Service Encryption User' on the key"
        )
        self._listings: dict[str, list[KeyProperties]] = {}  # per reconciliation, like OpenBao's

    # ---- the interface --------------------------------------------------------------------

    async def protection(self, key_name: str) -> base.VaultProperties:
        level = _text((await self._listing(key_name))[-1].recovery_level) or "Purgeable"
        return base.VaultProperties(
            soft_delete=level != "Purgeable", purge_protection="Purgeable" not in level
        )

    async def versions(self, key_name: str) -> list[base.KeyVersion]:
        now = datetime.now(UTC)
        result = []
        for properties in await self._listing(key_name):
            version = str(properties.version)
            if properties.enabled:
                facts, _ = await self._version(key_name, version, properties.updated_on)
            else:  # Key Vault refuses to read a disabled version; what it was does not matter now
                facts = (_facts.get(self._kid(key_name, version)) or (_UNKNOWN, None))[0]
            why = ""
            if properties.not_before is not None and now < properties.not_before:
                why = (
                    f"not valid before {properties.not_before:%Y-%m-%d %H:%M} UTC: wait, or change that date"
                )
            # Past its expiry a version still unwraps in Key Vault (only wrap stops): enabled, expired.
            enabled = bool(properties.enabled) and not why
            result.append(
                base.KeyVersion(
                    key_name,
                    version,
                    facts,
                    enabled,
                    why if properties.enabled else "",
                    properties.expires_on,
                )
            )
        return result

    async def wrap(self, key: base.KeyVersion, plaintext: bytes) -> base.Wrapped:
        listed = {p.version: p.updated_on for p in await self._listing(key.name)}
        # Fresh attributes matter here: the SDK checks the version's validity dates before wrapping.
        _, vault_key = await self._version(key.name, key.version, listed.get(key.version))
        async with self._guard(key.name, key.version, "wrap with"):
            result = await self._crypto(vault_key).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, plaintext)
        return base.Wrapped(result.encrypted_key, rsa.RSA_OAEP_256, key.version)

    async def unwrap(self, key_name: str, version: str, ciphertext: bytes, *, algorithm: str) -> bytes:
        wanted = _ALGORITHMS.get(algorithm)
        if wanted is None:
            raise base.UnwrapFailed(
                f"the account key was wrapped with {algorithm!r}, which Azure cannot undo"
            )
        _, vault_key = await self._version(key_name, version)
        async with self._guard(key_name, version, "unwrap with"):
            result = await self._crypto(vault_key).unwrap_key(wanted, ciphertext)
        return bytes(result.key)

    async def close(self) -> None:
        """The connection outlives this provider (see ``_Connection``); nothing to release here."""

    # ---- the vault ------------------------------------------------------------------------

    def _crypto(self, vault_key: KeyVaultKey) -> CryptographyClient:
        return CryptographyClient(
            vault_key,
            self._connection.credential,
            **_CLIENT_OPTIONS,
            transport=self._connection.transport,
            per_retry_policies=[_CountRequests()],
        )

    async def _listing(self, key_name: str) -> list[KeyProperties]:
        """Every version's attributes, oldest first: one paged call per key, shared for a moment."""
        if key_name not in self._listings:
            shared_key = (self.vault_url, self._client_id, self.identity, key_name)
            self._listings[key_name] = await _listings.get(shared_key, lambda: self._list(key_name))
        return self._listings[key_name]

    async def _list(self, key_name: str) -> list[KeyProperties]:
        async with self._guard(key_name, None, "list the versions of"):
            found = [p async for p in self._connection.keys.list_properties_of_key_versions(key_name)]
        if not found:
            raise base.KeyNotFound(f"key {key_name!r} does not exist in {self.vault_url}")
        return sorted(found, key=lambda p: (p.created_on.timestamp() if p.created_on else 0, p.version))

    async def _version(
        self, key_name: str, version: str, updated: datetime | None = None
    ) -> tuple[rsa.KeyFacts, KeyVaultKey]:
        """The version's public key and facts; read again only when its attributes were updated."""
        kid = self._kid(key_name, version)
        cached = _facts.get(kid)
        if cached is None or (updated is not None and cached[1].properties.updated_on != updated):
            async with self._guard(key_name, version, "read"):
                vault_key = await self._connection.keys.get_key(key_name, version)
            cached = (_key_facts(vault_key), vault_key)
            _facts.put(kid, cached)
        return cached

    def _kid(self, key_name: str, version: str) -> str:
        return f"{self.vault_url}/keys/{key_name}/{version}"

    @asynccontextmanager
    async def _guard(self, key_name: str, version: str | None, doing: str) -> AsyncIterator[None]:
        """Turns Azure SDK errors into the provider errors the operator understands."""
        try:
            yield
        except base.ProviderError:
            raise
        except Exception as error:
            where = f"key {key_name!r}{f' version {version}' if version else ''} in {self.vault_url}"
            translated = _translate(error, self, where, version, doing)
            if translated is error:
                raise
            raise translated from None


def _translate(
    error: Exception, provider: AzureKeyVaultProvider, where: str, version: str | None, doing: str
) -> Exception:
    if isinstance(error, ClientAuthenticationError) and error.status_code in (None, 400, 401):
        return base.AccessDenied(
            f"{provider.identity} could not sign in to Microsoft Entra ID to {doing} {where} "
            f"({_first_line(error.message)}): {provider.access_hint}"
        )
    if isinstance(error, ResourceNotFoundError):
        missing = base.KeyVersionNotFound if version else base.KeyNotFound
        return missing(f"{where} does not exist (a deleted key can be recovered while soft-deleted)")
    if isinstance(error, HttpResponseError) and error.status_code is not None:
        return _from_status(error.status_code, _first_line(error.message), provider, where, doing)
    if isinstance(error, ServiceRequestError | ServiceResponseError | aiohttp.ClientError | TimeoutError):
        return base.TransientError(
            f"Azure Key Vault {provider.vault_url} did not answer ({error.__class__.__name__})"
        )
    if isinstance(error, ValueError) and "challenge" in str(error):
        # The vault's 401 challenge named another resource: the URL is not a Key Vault's own.
        return base.VaultNotFound(
            f"{provider.vault_url} did not answer as an Azure Key Vault ({_first_line(str(error))}); "
            "set vaultURL to the vault's own URL, as `az keyvault show --query properties.vaultUri` prints it"
        )
    return error


def _from_status(
    status: int, detail: str, provider: AzureKeyVaultProvider, where: str, doing: str
) -> base.ProviderError:
    if status == 403 and "disabled" in detail.lower():
        return base.KeyDisabled(f"{where} is disabled ({detail}); enable it to use it")
    if status in (401, 403):
        return base.AccessDenied(
            f"{provider.identity} may not {doing} {where} ({detail}): {provider.access_hint}"
        )
    if status == 429 or status >= 500:
        return base.TransientError(f"Azure Key Vault answered {status} for {where}: {detail}")
    if status == 400 and doing.startswith("unwrap"):
        return base.UnwrapFailed(f"{where} could not unwrap the account key ({detail})")
    return base.DefinitiveError(f"Azure Key Vault refused to {doing} {where}: {detail}")


def _first_line(text: str | None) -> str:
    return base.foreign((text or "").strip().splitlines()[0] if (text or "").strip() else "")


_WRAPPING = ("wrapKey", "unwrapKey")  # the key_ops this provider uses


def _text(value: object) -> str:
    """The SDK's enums are str subclasses whose str() is the member name: take their value."""
    return str(getattr(value, "value", value) or "")


def _key_facts(vault_key: KeyVaultKey) -> rsa.KeyFacts:
    key_type = _text(vault_key.key_type) or "unknown"
    modulus: bytes | None = getattr(vault_key.key, "n", None)
    if key_type.startswith("RSA") and modulus:
        # key_ops absent: every operation of the key type is permitted.
        permitted = {_text(op) for op in vault_key.key_operations or _WRAPPING}
        forbidden = tuple(op for op in _WRAPPING if op not in permitted)
        return rsa.KeyFacts(key_type, len(modulus.lstrip(b"\0")) * 8, forbidden)
    if key_type.startswith("EC"):
        return rsa.KeyFacts("EC", _EC_SIZES.get(_text(getattr(vault_key.key, "crv", None)), 0))
    return rsa.KeyFacts(key_type, 0)
