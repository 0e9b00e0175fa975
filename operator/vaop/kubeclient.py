"""Kubernetes API clients: the operator's own, and one per account identity.

The operator touches a tenant's keys only *as the account's identity*: it asks the TokenRequest API
for a short-lived token of the account's ServiceAccount and calls the API with it, so the tenant's
RBAC decides. Tokens are cached per ServiceAccount and renewed before they expire, so identity
traffic grows with the number of identities, not with accounts or reconciliations.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import os
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from . import __version__, metrics

logger = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
TOKEN_SECONDS = 600  # the shortest lifetime the TokenRequest API grants
FRESH_TOKEN_SECONDS = 60.0  # a token refused within this long of being issued is not asked anew
_RENEW_AFTER = 0.8
_PRUNE_EVERY = 60.0  # seconds between sweeps for the tokens of identities no longer used


async def read_secret_or_none(core: client.CoreV1Api, name: str, namespace: str) -> client.V1Secret | None:
    """The Secret, or None when it does not exist (other API errors are raised)."""
    try:
        return await core.read_namespaced_secret(name, namespace)
    except ApiException as error:
        if error.status != 404:
            raise
        return None


def secret_data(secret: client.V1Secret) -> dict[str, bytes]:
    """A Secret's data, decoded."""
    return {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}


async def load_configuration(kubeconfig: str | None = None) -> client.Configuration:
    """``kubeconfig`` if given; else in-cluster configuration in a pod, else $KUBECONFIG / ~/.kube/config."""
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return configuration


def with_token(base: client.Configuration, token: str) -> client.Configuration:
    """The same server, CA and proxy as ``base``, authenticated only by ``token``."""
    configuration = _same_server(base)
    configuration.api_key = {"BearerToken": f"Bearer {token}"}
    return configuration


def _same_server(base: client.Configuration) -> client.Configuration:
    """The same server, CA and proxy as ``base``, with no credentials."""
    configuration = client.Configuration(host=base.host, ssl_ca_cert=base.ssl_ca_cert)
    configuration.verify_ssl = base.verify_ssl
    configuration.proxy = base.proxy
    return configuration


def api_client(configuration: client.Configuration, *, agent: str = "vaop") -> client.ApiClient:
    """An API client that names itself ``agent`` and reads the proxy settings of the environment
    once, not on every request.

    The apiserver takes the user agent's first word as the default field manager: the operator's
    writes show in managedFields and in audit logs as ``vaop``, not as the generated client's
    ``OpenAPI-Generator``.

    kubernetes_asyncio's HTTP session trusts the environment, so aiohttp looks up ~/.netrc and the
    proxy variables in a worker thread on every request: two thread hops per API call, a fifth of
    the operator's time in a rotation. The same proxy (HTTPS_PROXY, NO_PROXY) is decided here once.
    """
    if configuration.proxy is None:
        host = urllib.parse.urlsplit(configuration.host).hostname or ""
        proxies = urllib.request.getproxies()
        if proxies.get("https") and not urllib.request.proxy_bypass(host):
            configuration.proxy = proxies["https"]
    api = client.ApiClient(configuration)
    api.user_agent = f"{agent}/{__version__}"
    api.rest_client.pool_manager._trust_env = False  # aiohttp's switch for those lookups
    return api


@dataclass(frozen=True)
class ServiceAccountRef:
    namespace: str
    name: str

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    def __str__(self) -> str:
        return f"ServiceAccount {self.namespace}/{self.name}"


class IdentityError(Exception):
    """No token could be had for the identity (missing ServiceAccount, or the API refused)."""

    def __init__(self, message: str, *, not_found: bool = False, transient: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found
        self.transient = transient

    @classmethod
    def of(cls, account: ServiceAccountRef, error: ApiException, doing: str) -> IdentityError:
        if error.status == 404:
            return cls(f"{account} does not exist", not_found=True)
        transient = error.status == 429 or error.status >= 500
        return cls(f"cannot {doing} {account}: {error.status} {error.reason}", transient=transient)


class Identities:
    """Hands out API clients that act as a ServiceAccount, with cached short-lived tokens.

    Everything held for an identity goes once its token has expired unused: tenants come and go
    over months, and a ServiceAccount deleted with its namespace must not stay here for good. So
    what is held is bounded by the identities used within a token's lifetime (10 minutes); its
    sizes are ``vaop_cache_entries{cache="identity-tokens"|"identity-clients"}``."""

    def __init__(self, api: client.ApiClient, base: client.Configuration) -> None:
        self._core = client.CoreV1Api(api)
        self._base = base
        self._tokens: dict[tuple[ServiceAccountRef, tuple[str, ...]], tuple[str, float]] = {}
        self._audiences: dict[ServiceAccountRef, set[tuple[str, ...]]] = {}  # of the tokens held
        self._clients: dict[ServiceAccountRef, tuple[str, client.ApiClient]] = {}
        self._connections: client.ApiClient | None = None  # what every identity's client sends through
        self._annotations: dict[ServiceAccountRef, tuple[dict[str, str], float]] = {}
        self._locks: dict[tuple[ServiceAccountRef, tuple[str, ...]], asyncio.Lock] = {}
        self._pruned_at = time.monotonic()
        metrics.CACHE_ENTRIES.labels("identity-tokens").set_function(lambda: len(self._tokens))
        metrics.CACHE_ENTRIES.labels("identity-clients").set_function(lambda: len(self._clients))

    async def token(self, account: ServiceAccountRef, *, audiences: list[str] | None = None) -> str:
        """A token of ``account`` for ``audiences`` (default: the apiserver's), cached until renewal."""
        cache_key = (account, tuple(audiences or ()))
        if time.monotonic() >= self._pruned_at + _PRUNE_EVERY:
            self.prune()
        lock = self._locks.setdefault(cache_key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(cache_key)
            if cached and time.monotonic() < cached[1]:
                return cached[0]
            request = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=audiences or [], expiration_seconds=TOKEN_SECONDS)
            )
            try:
                response = await self._core.create_namespaced_service_account_token(
                    account.name, account.namespace, request
                )
            except ApiException as error:
                raise IdentityError.of(account, error, "get a token for") from None
            token: str = response.status.token
            self._tokens[cache_key] = (token, time.monotonic() + TOKEN_SECONDS * _RENEW_AFTER)
            self._audiences.setdefault(account, set()).add(cache_key[1])
            return token

    def prune(self) -> None:
        """Forget the identities whose every token has expired, and annotations read long ago."""
        now = self._pruned_at = time.monotonic()
        expired_after = TOKEN_SECONDS * (1 - _RENEW_AFTER)  # a token is renewed that long before it expires
        for cache_key, (_, renew_at) in list(self._tokens.items()):
            lock = self._locks.get(cache_key)
            if now >= renew_at + expired_after and not (lock and lock.locked()):
                self._drop_token(cache_key)
        for cache_key in [
            k for k, lock in self._locks.items() if k not in self._tokens and not lock.locked()
        ]:
            del self._locks[cache_key]  # of identities refused a token
        for account in [a for a, (_, until) in self._annotations.items() if now >= until]:
            del self._annotations[account]

    def _drop_token(self, cache_key: tuple[ServiceAccountRef, tuple[str, ...]]) -> None:
        """Drop one token, its lock, and the client that authenticates with it."""
        account, audiences = cache_key
        token = self._tokens.pop(cache_key)[0]
        self._locks.pop(cache_key, None)
        held = self._audiences.get(account, set())
        held.discard(audiences)
        if not held:
            self._audiences.pop(account, None)
        cached = self._clients.get(account)
        if cached is not None and cached[0] == token:
            del self._clients[account]  # its connections are shared: nothing of its own to close

    def oldest_token(self, account: ServiceAccountRef) -> float | None:
        """When the oldest token held for ``account`` was issued (monotonic seconds), if any."""
        renewals = [
            token[1]
            for audiences in self._audiences.get(account, ())
            if (token := self._tokens.get((account, audiences))) is not None
        ]
        return min(renewals) - TOKEN_SECONDS * _RENEW_AFTER if renewals else None

    def forget(self, account: ServiceAccountRef, *, issued_up_to: float) -> None:
        """Drop the tokens of ``account`` issued up to then (and the client using one): the next use
        asks for a new token. Tokens issued since (another caller renewed them) stay."""
        for audiences in list(self._audiences.get(account, ())):
            token = self._tokens.get((account, audiences))
            if token is not None and token[1] - TOKEN_SECONDS * _RENEW_AFTER <= issued_up_to:
                self._drop_token((account, audiences))
        self._annotations.pop(account, None)

    async def annotations(self, account: ServiceAccountRef) -> dict[str, str]:
        """The ServiceAccount's annotations (where workload-identity settings live), cached for a minute
        so that an annotation added to fix an account is seen soon."""
        cached = self._annotations.get(account)
        if cached and time.monotonic() < cached[1]:
            return cached[0]
        try:
            found = await self._core.read_namespaced_service_account(account.name, account.namespace)
        except ApiException as error:
            raise IdentityError.of(account, error, "read") from None
        annotations = dict(found.metadata.annotations or {})
        self._annotations[account] = (annotations, time.monotonic() + 60)
        return annotations

    async def client_for(self, account: ServiceAccountRef) -> client.ApiClient:
        """An API client acting as ``account``: a renewed token is put into it (requests read it as
        they are sent). Its requests go through connections that every identity's client shares."""
        token = await self.token(account)
        cached = self._clients.get(account)
        if cached is not None:
            if cached[0] != token:
                cached[1].configuration.api_key = {"BearerToken": f"Bearer {token}"}
                self._clients[account] = (token, cached[1])
            return cached[1]
        api = self._sharing_connections(with_token(self._base, token))
        self._clients[account] = (token, api)
        return api

    def _sharing_connections(self, configuration: client.Configuration) -> client.ApiClient:
        """A client of ``configuration``'s identity on the connections all identities share. The
        apiserver authenticates each request by its token, not its connection (client-go shares its
        transports the same way), so a thousand tenants' identities do not hold a thousand TLS
        connections, each made anew when its tenant comes back after its token expired."""
        if self._connections is None:
            self._connections = api_client(_same_server(self._base))
        api = copy.copy(self._connections)  # the same HTTP session; its own settings and headers
        api.configuration = configuration
        api.default_headers = dict(self._connections.default_headers)
        return api

    async def close(self) -> None:
        self._clients.clear()
        if self._connections is not None:
            await self._connections.close()
            self._connections = None


async def whoami(api: client.ApiClient) -> str:
    """The user name this client authenticates as (SelfSubjectReview)."""
    review = await client.AuthenticationV1Api(api).create_self_subject_review(
        client.V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview")
    )
    return str(review.status.user_info.username)
