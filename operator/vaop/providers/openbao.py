"""The ``openbao`` provider: RSA keys in the transit engine of OpenBao (or HashiCorp Vault: same API).

The account's identity logs in with the Kubernetes auth method (its ServiceAccount token, checked
by OpenBao with a TokenReview), so the vault's own policies decide access. Wrap and unwrap are
transit encrypt and decrypt; moving an account key to a newer version of the same key uses transit
``rewrap`` (batched with ``batch_input``), so no plaintext account key leaves the vault during a
rotation and a rotation of many accounts costs few requests.

Reported: key type and size from the transit key type; a version is enabled when it is at or above
``min_decryption_version``; ``deletion_allowed: false`` gives purge protection and soft-delete (a
key that cannot be deleted cannot be lost); a soft-deleted key is not found.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from typing import Any

import aiohttp

from .. import metrics
from ..crypto import rsa
from . import addresses as addresses_policy
from . import base

_KEY_TYPES = {
    "rsa-2048": rsa.KeyFacts("RSA", 2048),
    "rsa-3072": rsa.KeyFacts("RSA", 3072),
    "rsa-4096": rsa.KeyFacts("RSA", 4096),
    "ecdsa-p256": rsa.KeyFacts("EC", 256),
    "ecdsa-p384": rsa.KeyFacts("EC", 384),
    "ecdsa-p521": rsa.KeyFacts("EC", 521),
    "ed25519": rsa.KeyFacts("OKP", 256),
    "aes128-gcm96": rsa.KeyFacts("oct", 128),
    "aes256-gcm96": rsa.KeyFacts("oct", 256),
    "chacha20-poly1305": rsa.KeyFacts("oct", 256),
}
_TIMEOUT = aiohttp.ClientTimeout(total=10)
_BATCH_WINDOW = 0.02  # seconds a rewrap waits for others of the same key version
_BATCH_MAX = 128
# Rewraps waiting to be sent, per (address, transit mount, key, version, vault token).
_rewraps: dict[tuple[str, str, str, int, str], list[tuple[str, asyncio.Future[str]]]] = {}
# Vault tokens per (address, auth mount, role, identity): one login per identity and lease. Keyed by
# the identity, not its ServiceAccount token, which kubelet and the operator renew every few minutes:
# a renewed token finds the vault token its predecessor got, and nothing piles up.
_tokens: base.Bounded[tuple[str, str, str, str], tuple[str, float]] = base.Bounded(
    "openbao-tokens", limit=16384
)
# Key metadata by (address, transit mount, key, vault token): a token's reads serve only that token.
_key_reads: base.RecentReads[dict[str, Any]] = base.RecentReads(name="openbao-key-reads")
# Logins under way, and refused ones, by the same key as _tokens: a role deleted under 10,000
# accounts is one refused login for a moment, not one per account.
_logins: base.RecentReads[dict[str, Any]] = base.RecentReads(name="openbao-logins")


class OpenBaoKeyProvider(base.KeyProvider):
    name = "openbao"

    def __init__(
        self,
        *,
        address: str,
        transit_mount: str,
        auth_mount: str,
        role: str,
        service_account_token: str,
        identity: str,
        ca_bundle: str | None = None,
        vault_token: str | None = None,
        addresses: addresses_policy.AddressPolicy | None,
    ) -> None:
        self._address = address.rstrip("/")
        self._vault_token = vault_token  # a token given outright (break glass) instead of a login
        self._transit = transit_mount.strip("/")
        self._auth = auth_mount.strip("/")
        self._role = role
        self._jwt = service_account_token
        self._identity = identity
        self._ssl: ssl.SSLContext | bool = base.tls_context(ca_bundle) if ca_bundle else True
        self._addresses = addresses
        self._session: aiohttp.ClientSession | None = None
        self._keys: dict[str, dict[str, Any]] = {}

    # ---- the interface --------------------------------------------------------------------

    async def protection(self, key_name: str) -> base.VaultProperties:
        data = await self._key(key_name)
        undeletable = not data.get("deletion_allowed", True)
        return base.VaultProperties(soft_delete=undeletable, purge_protection=undeletable)

    async def versions(self, key_name: str) -> list[base.KeyVersion]:
        data = await self._key(key_name)
        facts = _KEY_TYPES.get(str(data.get("type")), rsa.KeyFacts(str(data.get("type")), 0))
        lowest = int(data.get("min_decryption_version") or 1)
        latest = int(data.get("latest_version") or max(map(int, data.get("keys") or {"0": None})))
        # Versions below min_decryption_version are archived and no longer listed under "keys":
        # they still exist (raising the minimum again brings them back), so report them disabled.
        return [base.KeyVersion(key_name, str(v), facts, v >= lowest) for v in range(1, latest + 1)]

    async def wrap(self, key: base.KeyVersion, plaintext: bytes) -> base.Wrapped:
        body = {"plaintext": base64.b64encode(plaintext).decode(), "key_version": int(key.version)}
        data = await self._call("POST", f"{self._transit}/encrypt/{key.name}", body, key_name=key.name)
        return base.Wrapped(str(data["ciphertext"]).encode(), rsa.RSA_OAEP_256, key.version)

    async def unwrap(self, key_name: str, version: str, ciphertext: bytes, *, algorithm: str) -> bytes:
        data = await self._call(
            "POST",
            f"{self._transit}/decrypt/{key_name}",
            {"ciphertext": ciphertext.decode()},
            key_name=key_name,
        )
        return base64.b64decode(data["plaintext"])

    async def rewrap(self, key: base.KeyVersion, ciphertext: bytes) -> base.Wrapped | None:
        """Joins a batch: rewraps of one key version arriving within a few milliseconds (a rotation
        re-wraps many accounts at once) go to OpenBao as one transit ``batch_input`` request."""
        token = await self._login()
        batch = (self._address, self._transit, key.name, int(key.version), token)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        waiting = _rewraps.setdefault(batch, [])
        waiting.append((ciphertext.decode(), future))
        if len(waiting) == 1:
            asyncio.get_running_loop().call_later(
                _BATCH_WINDOW, lambda: asyncio.ensure_future(self._flush(batch))
            )
        elif len(waiting) >= _BATCH_MAX:
            await self._flush(batch)
        return base.Wrapped((await future).encode(), rsa.RSA_OAEP_256, key.version)

    async def _flush(self, batch: tuple[str, str, str, int, str]) -> None:
        waiting = _rewraps.pop(batch, [])
        if not waiting:
            return
        _, transit, key_name, version, _ = batch
        body = {"key_version": version, "batch_input": [{"ciphertext": text} for text, _ in waiting]}
        try:
            data = await self._call("POST", f"{transit}/rewrap/{key_name}", body, key_name=key_name)
        except base.ProviderError as error:
            for _, future in waiting:
                if not future.done():
                    future.set_exception(error)
            return
        results = data.get("batch_results") or []
        for (_, future), result in zip(waiting, results, strict=False):
            if future.done():
                continue
            if result.get("error") or not result.get("ciphertext"):
                future.set_exception(base.UnwrapFailed(f"OpenBao could not rewrap: {result.get('error')}"))
            else:
                future.set_result(str(result["ciphertext"]))
        for _, future in waiting[len(results) :]:
            if not future.done():
                future.set_exception(
                    base.UnwrapFailed("OpenBao answered fewer batch results than it was sent")
                )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # ---- HTTP -----------------------------------------------------------------------------

    async def _key(self, key_name: str) -> dict[str, Any]:
        """The transit key's metadata: read once per reconciliation, and shared for a moment between
        reconciliations by the same identity (a rotation re-wraps many accounts at once)."""
        if key_name not in self._keys:
            data = await _key_reads.get(
                (self._address, self._transit, key_name, await self._login()),
                lambda: self._call("GET", f"{self._transit}/keys/{key_name}", None, key_name=key_name),
            )
            if data.get("soft_deleted"):
                raise base.KeyNotFound(f"transit key {key_name!r} is soft-deleted; restore it to use it")
            self._keys[key_name] = data
        return self._keys[key_name]

    async def _login(self) -> str:
        if self._vault_token is not None:
            return self._vault_token
        cache_key = (self._address, self._auth, self._role, self._identity)
        cached = _tokens.get(cache_key)
        if cached and time.monotonic() < cached[1]:
            return cached[0]
        data = await _logins.get(
            cache_key,
            lambda: self._request(
                "POST", f"auth/{self._auth}/login", {"role": self._role, "jwt": self._jwt}, token=None
            ),
        )
        auth = data.get("auth") or {}
        token = str(auth["client_token"])
        lease = float(auth.get("lease_duration") or 300)
        _tokens.put(cache_key, (token, time.monotonic() + lease * 0.8))
        return token

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None, *, key_name: str
    ) -> dict[str, Any]:
        token = await self._login()
        try:
            data = await self._request(method, path, body, token=token)
        except base.KeyNotFound:
            raise base.KeyNotFound(
                f"transit key {key_name!r} does not exist at {self._address}/{self._transit}"
            ) from None
        return dict(data.get("data") or {})

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None, *, token: str | None
    ) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=_TIMEOUT, connector=addresses_policy.connector(self._addresses)
            )
        headers = {"X-Vault-Token": token} if token else {}
        endpoint = "login" if token is None else path.split("/")[1]
        metrics.VAULT_REQUESTS.labels(self.name, endpoint).inc()
        status, payload = await _exchange(
            self._session, method, f"{self._address}/v1/{path}", body, headers=headers, tls=self._ssl
        )
        if status < 300:
            return payload
        errors = _errors(payload, status)
        if token is None and "deleted or recreated" in errors:
            # OpenBao's TokenReview found the ServiceAccount token invalid, not the role wanting.
            raise base.CredentialsRejected(
                f"OpenBao at {self._address} did not accept the token of {self._identity}: the "
                "ServiceAccount was deleted, or made again under its name; make sure it exists"
            )
        if status in (401, 403) or (token is None and status == 400):
            what = path.rsplit("/", maxsplit=1)[-1]
            raise base.AccessDenied(
                f"{self._identity} may not use {what!r} at {self._address} ({errors}): bind a policy "
                f"allowing read on {self._transit}/keys/<key> and update on {self._transit}/encrypt, "
                f"decrypt and rewrap to the Kubernetes-auth role {self._role!r}"
            )
        if status == 404:
            raise base.KeyNotFound(errors)
        if status == 429 or status >= 500:
            raise base.TransientError(f"OpenBao at {self._address} answered {status}: {errors}")
        raise base.DefinitiveError(f"OpenBao refused {path}: {errors}", reason=base.UnwrapFailed.reason)


async def _exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: dict[str, Any] | None,
    *,
    headers: dict[str, str],
    tls: ssl.SSLContext | bool,
) -> tuple[int, dict[str, Any]]:
    """One request: the status and the JSON body (empty when there is none)."""
    address = url.split("/v1/", maxsplit=1)[0]
    try:
        async with session.request(method, url, json=body, headers=headers, ssl=tls) as response:
            text = await response.text()
            status = response.status
    except aiohttp.ClientConnectorCertificateError:
        # Transient: a vault's certificate may be renewed under its clients. The message says what to check.
        raise base.TransientError(
            f"OpenBao at {address} presented a certificate that is not trusted; set caBundle to the CA "
            "that issued it"
        ) from None
    except (aiohttp.ClientError, TimeoutError) as error:
        raise base.TransientError(
            f"OpenBao at {address} did not answer ({error.__class__.__name__})"
        ) from None
    try:
        payload = json.loads(text) if text.strip() else {}
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise base.VaultNotFound(
            f"{address} did not answer as OpenBao does (HTTP {status}, not a JSON object): set "
            "openbao.address to the vault's API address, as `bao status` shows it"
        )
    return status, payload


def _errors(payload: dict[str, Any], status: int) -> str:
    found = payload.get("errors")
    return base.foreign("; ".join(map(str, found))) if isinstance(found, list) and found else f"HTTP {status}"


# sys/health answers: 200 active, 429 standby, 472 DR secondary, 473 performance standby.
_HEALTHY = frozenset({200, 429, 472, 473})


async def probe(
    address: str, *, ca_bundle: str | None, policy: addresses_policy.AddressPolicy | None
) -> None:
    """Reach the vault without credentials (``sys/health``): raises when it does not answer as a usable
    OpenBao (unreachable, sealed, not initialised, something else at the address)."""
    tls: ssl.SSLContext | bool = base.tls_context(ca_bundle) if ca_bundle else True
    address = address.rstrip("/")
    async with aiohttp.ClientSession(
        timeout=_TIMEOUT, connector=addresses_policy.connector(policy)
    ) as session:
        status, payload = await _exchange(
            session, "GET", f"{address}/v1/sys/health", None, headers={}, tls=tls
        )
    if status in _HEALTHY:
        return
    if payload.get("sealed") or not payload.get("initialized", True):
        state = "sealed" if payload.get("sealed") else "not initialised"
        raise base.TransientError(f"OpenBao at {address} is {state}; unseal it (bao operator unseal)")
    raise base.VaultNotFound(
        f"OpenBao at {address} answered HTTP {status} to sys/health: {_errors(payload, status)}"
    )
