"""An Azure Key Vault stand-in for tests: the keys REST API and Entra ID's token endpoint, on loopback.

No Key Vault emulator could be installed from this project's registries (Lowkey Vault's server is not
served from Maven Central here, only its client libraries), so the azureKeyVault provider is tested
against this server instead. Its exchanges follow the Azure REST reference, as written down by hand in
tests/fixtures/azure/exchanges.json (authored from the documentation, not recorded: the real service
cannot be reached from here). ``tests/unit/test_azure_exchanges.py`` serves those to the provider, and
``test_azure_key_vault.py`` checks that this server answers in the same shapes. The provider talks to
it through the real azure-keyvault-keys and azure-identity packages, over TLS. Like Key Vault it pages
a key's versions (``page_size``, 25 by default) and links the next page, and honours a version's
``key_ops``.

What is real: RSA keys and OAEP unwrapping (``cryptography``), the challenge-based sign-in the SDK
performs, and the federated credential check: the ServiceAccount token is verified by a TokenReview
against the real kube-apiserver, for the audience api://AzureADTokenExchange, as Entra ID verifies it
against the cluster's OIDC issuer. What is not: Azure itself, its propagation delays, Managed HSM.

Quirk: the SDK only accepts a challenge whose resource is a parent domain of the vault's host; the
vault here is https://127.0.0.1:<port>, so the challenge names the resource https://0.0.1:<port>.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from kubernetes import client

from vaop import pki
from vaopdev import cluster

AUDIENCE = "api://AzureADTokenExchange"
ROLE = "Key Vault Crypto Service Encryption User"
VAULT_SCOPE = "*"  # a role assignment on the whole vault rather than one key
_ACTIONS = {"read": "keys/read", "wrapkey": "keys/wrap/action", "unwrapkey": "keys/unwrap/action"}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"RSA-OAEP-256": hashes.SHA256, "RSA-OAEP": hashes.SHA1}


@dataclass
class _Version:
    version: str
    key_type: str  # RSA, RSA-HSM, EC
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    created: int
    enabled: bool = True
    expires: int | None = None
    updated: int = 0
    key_ops: list[str] | None = None  # None: every operation of the key type


@dataclass
class _Key:
    versions: list[_Version] = field(default_factory=list)
    recovery_level: str = "Recoverable"  # soft-delete with purge protection
    deleted: bool = False


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _error(status: int, code: str, message: str, inner: str | None = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if inner:
        body["innererror"] = {"code": inner}
    return web.json_response({"error": body}, status=status)


class AzureKeyVault:
    """One vault and one Entra tenant. Tests manage keys, app registrations, federated credentials
    and role assignments directly (as Azure's control plane would); the operator uses the REST API."""

    def __init__(self, admin: client.ApiClient, workdir: Path) -> None:
        self._admin = admin
        self.port = cluster.free_port()
        self.vault_url = f"https://127.0.0.1:{self.port}/"
        self.authority = f"https://127.0.0.1:{self.port}"
        self.tenant_id = str(uuid.uuid4())
        ca = pki.make_ca("azure-stand-in-ca")
        self.ca_pem = ca.cert_pem.decode()
        serving = pki.issue_serving(ca, dns_names=["localhost"], ip_addresses=["127.0.0.1"])
        (workdir / "tls.crt").write_bytes(serving.cert_pem)
        (workdir / "tls.key").write_bytes(serving.key_pem)
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(workdir / "tls.crt", workdir / "tls.key")
        self._lock = threading.Lock()
        self.keys: dict[str, _Key] = {}
        self._federated: set[tuple[str, str]] = set()  # (client id, subject)
        self._assignments: set[tuple[str, str]] = set()  # (client id, key name or VAULT_SCOPE): ROLE
        self._tokens: dict[str, tuple[str, float]] = {}  # access token -> (client id, expiry)
        self.requests: list[tuple[str, str]] = []  # (method, path and query) of every request, for counting
        self.page_size = 25  # Key Vault's largest page of key versions; a test may make it smaller
        self.token_seconds = 3599  # an access token's lifetime, as Entra ID gives it; a soak shortens it
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # ---- the control plane (what the Azure portal or az would do) ----------------------------

    def register_app(self, subject: str) -> str:
        """An app registration with a federated credential for ``subject``; returns its client ID."""
        client_id = str(uuid.uuid4())
        with self._lock:
            self._federated.add((client_id, subject))
        return client_id

    def assign(self, client_id: str, key: str = VAULT_SCOPE) -> None:
        """Grants the role on one key, or (by default) on the whole vault."""
        with self._lock:
            self._assignments.add((client_id, key))

    def unassign(self, client_id: str, key: str = VAULT_SCOPE) -> None:
        with self._lock:
            self._assignments.discard((client_id, key))

    def add_version(
        self,
        key: str,
        *,
        key_type: str = "RSA",
        size: int = 2048,
        recovery_level: str | None = None,
        key_ops: list[str] | None = None,
    ) -> str:
        private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if key_type.startswith("EC"):
            private = ec.generate_private_key(ec.SECP256R1())
        else:
            private = rsa.generate_private_key(public_exponent=65537, key_size=size)
        version = uuid.uuid4().hex
        with self._lock:
            entry = self.keys.setdefault(key, _Key())
            if recovery_level:
                entry.recovery_level = recovery_level
            # Distinct creation times keep "oldest first" well defined at second resolution.
            created = max([int(time.time())] + [v.created + 1 for v in entry.versions])
            entry.versions.append(
                _Version(version, key_type, private, created, updated=created, key_ops=key_ops)
            )
        return version

    def update(
        self,
        key: str,
        version: str,
        *,
        enabled: bool | None = None,
        expires: int | None = None,
        key_ops: list[str] | None = None,
    ) -> None:
        with self._lock:
            found = next(v for v in self.keys[key].versions if v.version == version)
            if enabled is not None:
                found.enabled = enabled
            if expires is not None:
                found.expires = expires
            if key_ops is not None:  # az keyvault key set-attributes --ops ...
                found.key_ops = key_ops
            found.updated = max(int(time.time()), found.updated + 1)

    def delete(self, key: str, *, deleted: bool = True) -> None:
        """Soft-deletes the key (or, with deleted=False, recovers it)."""
        with self._lock:
            self.keys[key].deleted = deleted

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)

    def stop(self) -> None:
        self.pause()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def pause(self) -> None:
        """Stops listening (connections are refused) but keeps every key, app and assignment."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
            self._runner = None

    def resume(self) -> None:
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._record])
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/keys/{name}/versions", self._versions)
        app.router.add_get("/keys/{name}", self._get)
        app.router.add_get("/keys/{name}/{version}", self._get)
        app.router.add_post("/keys/{name}/{version}/{operation:wrapkey|unwrapkey}", self._operate)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self._tls).start()

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        response: web.StreamResponse = await handler(request)
        return response

    # ---- Entra ID: the client-credentials grant with a federated client assertion ------------

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        client_id, assertion = str(form.get("client_id", "")), str(form.get("client_assertion", ""))
        if request.match_info["tenant"] != self.tenant_id:
            return self._aad_error(
                400, "invalid_request", 90002, f"Tenant '{request.match_info['tenant']}' not found."
            )
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return self._aad_error(
                400, "invalid_request", 7000218, "The request body must contain a client_assertion."
            )
        subject = await asyncio.to_thread(self._review, assertion)
        with self._lock:
            known = {c for c, _ in self._federated}
            matched = (client_id, subject) in self._federated
        if client_id not in known:
            return self._aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found.",
            )
        if subject is None or not matched:
            return self._aad_error(
                400,
                "invalid_client",
                70021,
                "No matching federated identity record found for presented assertion subject "
                f"'{subject}'. Check your federated identity credential Subject, Audience and Issuer.",
            )
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (client_id, time.monotonic() + self.token_seconds)
        lifetime = self.token_seconds
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            }
        )

    def _review(self, assertion: str) -> str | None:
        """Verifies the ServiceAccount token as Entra ID does: signature, expiry and audience."""
        review = client.AuthenticationV1Api(self._admin).create_token_review(
            client.V1TokenReview(spec=client.V1TokenReviewSpec(token=assertion, audiences=[AUDIENCE]))
        )
        if not review.status.authenticated:
            return None
        return str(review.status.user.username)

    def _aad_error(self, status: int, error: str, code: int, description: str) -> web.Response:
        return web.json_response(
            {
                "error": error,
                "error_description": f"AADSTS{code}: {description}",
                "error_codes": [code],
                "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
                "trace_id": str(uuid.uuid4()),
                "correlation_id": str(uuid.uuid4()),
            },
            status=status,
        )

    # ---- Key Vault ----------------------------------------------------------------------------

    def _caller(self, request: web.Request) -> str | web.Response:
        """The calling app, or the 401 challenge that starts the SDK's sign-in."""
        header = request.headers.get("Authorization", "")
        with self._lock:
            found = self._tokens.get(header.removeprefix("Bearer "))
        if not header.startswith("Bearer ") or found is None or found[1] < time.monotonic():
            response = _error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
            response.headers["WWW-Authenticate"] = (
                f'Bearer authorization="{self.authority}/{self.tenant_id}", resource="https://0.0.1:{self.port}"'
            )
            return response
        return found[0]

    def _denied(self, client_id: str, name: str, action: str) -> web.Response | None:
        with self._lock:
            if {(client_id, name), (client_id, VAULT_SCOPE)} & self._assignments:
                return None
        return _error(
            403,
            "Forbidden",
            "Caller is not authorized to perform action on resource.\r\n"
            "If role assignments, deny assignments or role definitions were changed recently, please observe "
            f"propagation time.\r\nCaller: appid={client_id}\r\n"
            f"Action: 'Microsoft.KeyVault/vaults/{_ACTIONS[action]}'\r\nAssignment: (not found)\r\n"
            "DecisionReason: 'DeniedWithNoValidRBAC'\r\n",
            "ForbiddenByRbac",
        )

    def _find(self, name: str, version: str | None) -> _Version | web.Response:
        with self._lock:
            entry = self.keys.get(name)
            if entry is None or entry.deleted:
                return _error(
                    404,
                    "KeyNotFound",
                    f"A key with (name/id) {name} was not found in this key vault. If you recently deleted "
                    "this key you may be able to recover it using the correct recovery command.",
                )
            if not version:
                return entry.versions[-1]
            found = next((v for v in entry.versions if v.version == version), None)
        if found is None:
            return _error(
                404, "KeyNotFound", f"A key with (name/id) {name}/{version} was not found in this key vault."
            )
        return found

    def _kid(self, name: str, version: str) -> str:
        return f"{self.vault_url}keys/{name}/{version}"

    def _attributes(self, name: str, version: _Version) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "enabled": version.enabled,
            "created": version.created,
            "updated": version.updated,
            "recoveryLevel": self.keys[name].recovery_level,
            "recoverableDays": 90,
        }
        if version.expires is not None:
            attributes["exp"] = version.expires
        return attributes

    def _bundle(self, name: str, version: _Version) -> dict[str, Any]:
        jwk: dict[str, Any] = {"kid": self._kid(name, version.version), "kty": version.key_type}
        public = version.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            numbers = public.public_numbers()
            jwk |= {
                "key_ops": version.key_ops
                or ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
                "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
                "e": _b64url(numbers.e.to_bytes(3, "big")),
            }
        else:
            point = public.public_numbers()
            jwk |= {
                "key_ops": ["sign", "verify"],
                "crv": "P-256",
                "x": _b64url(point.x.to_bytes(32, "big")),
                "y": _b64url(point.y.to_bytes(32, "big")),
            }
        return {"key": jwk, "attributes": self._attributes(name, version)}

    def _target(self, request: web.Request, action: str) -> _Version | web.Response:
        """The key version a request names, once the caller is signed in and holds the role on it."""
        caller = self._caller(request)
        if isinstance(caller, web.Response):
            return caller
        name = request.match_info["name"]
        return self._denied(caller, name, action) or self._find(name, request.match_info.get("version"))

    async def _versions(self, request: web.Request) -> web.Response:
        found = self._target(request, "read")
        if isinstance(found, web.Response):
            return found
        name = request.match_info["name"]
        start = int(request.query.get("$skiptoken", "0"))
        size = min(self.page_size, int(request.query.get("maxresults", self.page_size)))
        with self._lock:
            versions = self.keys[name].versions
            items = [
                {"kid": self._kid(name, v.version), "attributes": self._attributes(name, v)}
                for v in versions[start : start + size]
            ]
            more = start + size < len(versions)
        query = (
            f"api-version={request.query.get('api-version', '')}&$skiptoken={start + size}&maxresults={size}"
        )
        next_link = f"{self.vault_url}keys/{name}/versions?{query}" if more else None
        return web.json_response({"value": items, "nextLink": next_link})

    async def _get(self, request: web.Request) -> web.Response:
        found = self._target(request, "read")
        if isinstance(found, web.Response):
            return found
        if not found.enabled:
            return _error(403, "Forbidden", "Operation get is not allowed on a disabled key.", "KeyDisabled")
        return web.json_response(self._bundle(request.match_info["name"], found))

    async def _operate(self, request: web.Request) -> web.Response:
        operation = request.match_info["operation"]
        found = self._target(request, operation)
        if isinstance(found, web.Response):
            return found
        verb = "wrapKey" if operation == "wrapkey" else "unwrapKey"
        if not found.enabled:
            return _error(
                403, "Forbidden", f"Operation {verb} is not allowed on a disabled key.", "KeyDisabled"
            )
        if found.key_ops is not None and verb not in found.key_ops:
            return _error(400, "BadParameter", f"Operation {verb} is not permitted on this key.")
        body = json.loads(await request.text())
        digest = _HASHES.get(str(body.get("alg")))
        if digest is None or not isinstance(found.private, rsa.RSAPrivateKey):
            return _error(400, "BadParameter", f"Invalid algorithm {body.get('alg')!r} for this key.")
        oaep = padding.OAEP(mgf=padding.MGF1(digest()), algorithm=digest(), label=None)
        value = _unb64url(str(body.get("value", "")))
        try:
            if operation == "wrapkey":
                result = found.private.public_key().encrypt(value, oaep)
            else:
                result = found.private.decrypt(value, oaep)
        except ValueError:
            return _error(400, "BadParameter", "The parameter is incorrect.")
        name = request.match_info["name"]
        return web.json_response({"kid": self._kid(name, found.version), "value": _b64url(result)})


def start(admin: client.ApiClient, workdir: Path) -> AzureKeyVault:
    vault = AzureKeyVault(admin, workdir)
    vault.start()
    return vault
