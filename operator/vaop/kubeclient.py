"""Kubernetes API clients: the operator's own, and one per account identity.

The operator touches a tenant's keys only *as the account's identity*: it asks the TokenRequest API
for a short-lived token of the account's ServiceAccount and calls the API with it, so the tenant's
RBAC decides. Tokens are cached per ServiceAccount and renewed before they expire, so identity
traffic grows with the number of identities, not with accounts or reconciliations.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from . import __version__

logger = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
TOKEN_SECONDS = 600  # the shortest lifetime the TokenRequest API grants
FRESH_TOKEN_SECONDS = 60.0  # a token refused within this long of being issued is not asked anew
_RENEW_AFTER = 0.8


def unavailable(error: Exception) -> str | None:
    """What went wrong, in a line, when the apiserver is busy, failing or away (429, 5xx, 409 on a
    write that raced, a broken connection): worth a retry. None for anything else."""
    if isinstance(error, ApiException) and (error.status in (0, 409, 429) or error.status >= 500):
        return f"the apiserver answered {error.status} {error.reason}"
    if isinstance(error, aiohttp.ClientError | asyncio.TimeoutError | ConnectionError):
        return f"the apiserver could not be reached ({error.__class__.__name__})"
    return None


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
    configuration = client.Configuration(host=base.host, ssl_ca_cert=base.ssl_ca_cert)
    configuration.verify_ssl = base.verify_ssl
    configuration.proxy = base.proxy
    configuration.api_key = {"BearerToken": f"Bearer {token}"}
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
    """Hands out API clients that act as a ServiceAccount, with cached short-lived tokens."""

    def __init__(self, api: client.ApiClient, base: client.Configuration) -> None:
        self._core = client.CoreV1Api(api)
        self._base = base
        self._tokens: dict[tuple[ServiceAccountRef, tuple[str, ...]], tuple[str, float]] = {}
        self._audiences: dict[ServiceAccountRef, set[tuple[str, ...]]] = {}  # of the tokens held
        self._clients: dict[ServiceAccountRef, tuple[str, client.ApiClient]] = {}
        self._annotations: dict[ServiceAccountRef, tuple[dict[str, str], float]] = {}
        self._locks: dict[tuple[ServiceAccountRef, tuple[str, ...]], asyncio.Lock] = {}

    async def token(self, account: ServiceAccountRef, *, audiences: list[str] | None = None) -> str:
        """A token of ``account`` for ``audiences`` (default: the apiserver's), cached until renewal."""
        cache_key = (account, tuple(audiences or ()))
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
                del self._tokens[(account, audiences)]
                self._audiences[account].discard(audiences)
                cached = self._clients.get(account)
                if cached is not None and cached[0] == token[0]:
                    del self._clients[account]
                    _close_later(cached[1])
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
        """An API client acting as ``account``, kept (with its connections) until its token is renewed."""
        token = await self.token(account)
        cached = self._clients.get(account)
        if cached is not None and cached[0] == token:
            return cached[1]
        api = api_client(with_token(self._base, token))
        self._clients[account] = (token, api)
        if cached is not None:
            _close_later(cached[1])
        return api

    async def close(self) -> None:
        for _, api in self._clients.values():
            await api.close()
        self._clients.clear()


def _close_later(api: client.ApiClient) -> None:
    """In-flight calls may still use a replaced client: close it a little later, not now."""
    asyncio.get_running_loop().call_later(60, lambda: asyncio.ensure_future(api.close()))


PAGE_SIZE = 500  # objects per page of a listing: one page at a time in memory, each well within a timeout


async def pages(list_function: Callable[..., Awaitable[Any]], **params: Any) -> AsyncIterator[Any]:
    """Every page of a list call, ``PAGE_SIZE`` objects at a time: models, or dicts for custom objects."""
    token: str | None = None
    while True:
        page = await list_function(**params, limit=PAGE_SIZE, _continue=token)
        yield page
        token = page["metadata"].get("continue") if isinstance(page, dict) else page.metadata._continue
        if not token:
            return


class WatchCache:
    """Informer-style list then watch with a server-side label selector, forever, keeping what its
    readers use of each object (``Cached``).

    Reads come from here instead of GETs. After every (re)list, objects that vanished or changed
    while no watch was open are reported (DELETED, MODIFIED), so nothing in the gap between two
    watches is missed. ``on_event`` gets the event type (ADDED, MODIFIED, DELETED) and the object;
    the first listing reports nothing, and neither does the echo of a write this process made and
    ``put`` here (its own write is no news to it).
    """

    def __init__(
        self,
        list_function: Callable[..., Awaitable[Any]],
        *,
        label_selector: str,
        on_event: Callable[[str, Cached], None] = lambda kind, obj: None,
        restart_delay: float = 5.0,
    ) -> None:
        self._list = list_function
        self._selector = label_selector
        self._on_event = on_event
        self._restart_delay = restart_delay
        self._objects: dict[tuple[str, str], Cached] = {}
        self.synced = asyncio.Event()

    def get(self, namespace: str, name: str) -> Cached | None:
        return self._objects.get((namespace, name))

    def held(self) -> list[tuple[str, str]]:
        """(namespace, name) of every object held; namespace is None for cluster-scoped kinds."""
        return list(self._objects)

    def put(self, obj: Any) -> None:
        """What a write of this process returned: newer than what the watch delivered so far."""
        key = (obj.metadata.namespace, obj.metadata.name)
        if _newer(obj, self._objects.get(key)):
            self._objects[key] = cached(obj)

    async def run(self) -> None:
        while True:
            try:
                await self._list_then_watch()
            except asyncio.CancelledError:
                raise
            except ApiException as error:
                # 410 Gone: the version watched from was compacted away; only a fresh list catches up.
                log = logger.info if error.status == 410 else logger.warning
                log("Watch of %s ended (%s); relisting", self._selector, error.status)
                await asyncio.sleep(self._restart_delay if error.status != 410 else 0)
            except Exception as error:
                logger.warning("Watch of %s ended (%s); relisting", self._selector, error.__class__.__name__)
                await asyncio.sleep(self._restart_delay)

    async def _list_then_watch(self) -> None:
        listed, version = await self._list_all()
        if self.synced.is_set():
            for key in self._objects.keys() - listed.keys():
                self._on_event("DELETED", self._objects[key])
            for key, obj in listed.items():
                known = self._objects.get(key)
                if known is None:
                    self._on_event("ADDED", obj)
                elif _newer(obj, known):
                    self._on_event("MODIFIED", obj)
        self._objects = listed
        self.synced.set()
        # Each watch request ends after its timeout; the next one goes on from the last version seen
        # (bookmarks keep it fresh while nothing changes), as client-go's reflector does: a relist
        # of every object each time would be the largest request and allocation the operator makes.
        while True:
            stream = watch.Watch()
            async with stream:
                async for event in stream.stream(
                    self._list,
                    label_selector=self._selector,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=300,
                ):
                    self._apply(event["type"], event["object"])
                version = stream.resource_version

    async def _list_all(self) -> tuple[dict[tuple[str, str], Cached], str]:
        """Every object, listed in pages (a page at a time in memory), and the list's version."""
        listed: dict[tuple[str, str], Cached] = {}
        version = ""
        async for page in pages(self._list, label_selector=self._selector):
            listed.update(((o.metadata.namespace, o.metadata.name), cached(o)) for o in page.items)
            version = page.metadata.resource_version
        return listed, version

    def _apply(self, kind: str, obj: Any) -> None:
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return  # BOOKMARK: only a newer version to go on from
        key = (obj.metadata.namespace, obj.metadata.name)
        known = self._objects.get(key)
        if kind != "DELETED" and known is not None and not _newer(obj, known):
            return  # the echo of this process's own write, or older than it
        kept = cached(obj)
        if kind == "DELETED":
            self._objects.pop(key, None)
        else:
            self._objects[key] = kept
        self._on_event(kind, kept)


@dataclass(frozen=True, slots=True)
class CachedMetadata:
    name: str
    namespace: str | None
    uid: str | None
    resource_version: str | None
    labels: dict[str, str] | None
    annotations: dict[str, str] | None
    owner_uids: tuple[str, ...] = ()  # the uids its ownerReferences name


@dataclass(frozen=True, slots=True)
class Cached:
    """What a watch cache keeps of an object: the fields its readers use, under the names the
    client's models give them (``obj.metadata.labels``, ``obj.type``, ``obj.data``). A model keeps
    every field of its kind in a dict of its own, managedFields included: 20,000 account-key Secrets
    took 80 MiB as models and take 46 so."""

    metadata: CachedMetadata
    type: str | None = None
    data: dict[str, str] | None = None


def cached(obj: Any) -> Cached:
    """The part of a client model (a Secret, a Namespace) that a watch cache keeps."""
    meta = obj.metadata
    return Cached(
        CachedMetadata(
            name=meta.name,
            namespace=meta.namespace,
            uid=getattr(meta, "uid", None),
            resource_version=meta.resource_version,
            labels=_shared_keys(getattr(meta, "labels", None)),
            annotations=_shared_keys(getattr(meta, "annotations", None)),
            owner_uids=tuple(o.uid for o in getattr(meta, "owner_references", None) or ()),
        ),
        type=getattr(obj, "type", None),
        data=_shared_keys(getattr(obj, "data", None)),
    )


def _shared_keys(mapping: dict[str, str] | None) -> dict[str, str] | None:
    """The same label, annotation and data keys on every object, held once (interned)."""
    return None if mapping is None else {sys.intern(key): value for key, value in mapping.items()}


def _newer(obj: Any, known: Any | None) -> bool:
    """Is ``obj`` a later state than ``known``?"""
    return known is None or later_version(obj.metadata.resource_version, known.metadata.resource_version)


def later_version(version: str | None, than: str | None) -> bool:
    """Is resourceVersion ``version`` later than ``than``? They are etcd revisions here; where one is
    not a number (another storage), ``version``, the one just received, is taken as the later."""
    try:
        return int(version) > int(than)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True


async def whoami(api: client.ApiClient) -> str:
    """The user name this client authenticates as (SelfSubjectReview)."""
    review = await client.AuthenticationV1Api(api).create_self_subject_review(
        client.V1SelfSubjectReview(api_version="authentication.k8s.io/v1", kind="SelfSubjectReview")
    )
    return str(review.status.user_info.username)
