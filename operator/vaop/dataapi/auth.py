"""Who is asking, and may they: delegated to the kube-apiserver, as every aggregated API server does.

Authentication: only the apiserver's front proxy is trusted. Its client certificate must verify
against the request-header CA that the apiserver publishes in the ConfigMap
kube-system/extension-apiserver-authentication, and its common name must be one of the allowed
names listed there; the user, groups and extra then come from the X-Remote-* headers it names. A
request without such a certificate (anyone calling the operator's port directly) gets 401.

Authorization: every request is a SubjectAccessReview for that user, cached for 10 s like the
apiserver's delegating authorizer, so RBAC on data.videoanalyzer.io decides.
"""

from __future__ import annotations

import dataclasses
import json
import ssl
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client

from .. import metrics

CONFIGMAP = ("kube-system", "extension-apiserver-authentication")
CACHE_SECONDS = 10.0
AUTHENTICATED = "system:authenticated"


@dataclass(frozen=True)
class RequestHeaderConfig:
    ca_pem: str
    allowed_names: tuple[str, ...]
    username_headers: tuple[str, ...]
    group_headers: tuple[str, ...]
    extra_prefixes: tuple[str, ...]


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = field(default_factory=tuple)


class Unauthenticated(Exception):
    pass


def _list(data: Mapping[str, str], key: str) -> tuple[str, ...]:
    raw = data.get(key)
    return tuple(json.loads(raw)) if raw else ()


async def request_header_config(api: client.ApiClient) -> RequestHeaderConfig:
    namespace, name = CONFIGMAP
    config_map = await client.CoreV1Api(api).read_namespaced_config_map(name, namespace)
    data = config_map.data or {}
    if not data.get("requestheader-client-ca-file"):
        raise Unauthenticated(
            f"ConfigMap {namespace}/{name} has no requestheader-client-ca-file: the kube-apiserver runs "
            "without --requestheader-client-ca-file, so it cannot proxy to an aggregated API"
        )
    return RequestHeaderConfig(
        ca_pem=data["requestheader-client-ca-file"],
        allowed_names=_list(data, "requestheader-allowed-names"),
        username_headers=_list(data, "requestheader-username-headers") or ("X-Remote-User",),
        group_headers=_list(data, "requestheader-group-headers") or ("X-Remote-Group",),
        extra_prefixes=_list(data, "requestheader-extra-headers-prefix") or ("X-Remote-Extra-",),
    )


def trust_front_proxy(context: ssl.SSLContext, config: RequestHeaderConfig) -> None:
    """Ask for client certificates and verify them against the request-header CA."""
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(cadata=config.ca_pem)


def authenticate(
    peer_certificate: Mapping[str, Any] | None, headers: Mapping[str, str], config: RequestHeaderConfig
) -> User:
    """The user the front proxy vouches for; Unauthenticated for anyone else."""
    if not peer_certificate:
        raise Unauthenticated("a client certificate of the apiserver's front proxy is required")
    subject = {key: value for rdn in peer_certificate.get("subject", ()) for key, value in rdn}
    common_name = subject.get("commonName", "")
    if config.allowed_names and common_name not in config.allowed_names:
        raise Unauthenticated(f"client certificate {common_name!r} is not an allowed front proxy")
    name = next((headers[h] for h in config.username_headers if headers.get(h)), "")
    if not name:
        raise Unauthenticated("the front proxy named no user")
    groups: list[str] = []
    extra: dict[str, list[str]] = {}
    for header, value in _items(headers):
        if any(header.lower() == g.lower() for g in config.group_headers):
            groups.append(value)
        for prefix in config.extra_prefixes:
            if header.lower().startswith(prefix.lower()):
                key = urllib.parse.unquote(header[len(prefix) :]).lower()
                extra.setdefault(key, []).append(value)
    if AUTHENTICATED not in groups and name != "system:anonymous":
        groups.append(AUTHENTICATED)  # as the apiserver's authenticated-group adder does for every user
    return User(name, tuple(groups), tuple((k, tuple(v)) for k, v in sorted(extra.items())))


def _items(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    getall = getattr(headers, "items", None)
    return list(getall()) if getall else []


@dataclass(frozen=True)
class Attributes:
    verb: str
    resource: str | None = None  # None: a non-resource path (discovery, OpenAPI)
    namespace: str | None = None
    name: str | None = None
    path: str | None = None

    def describe(self) -> str:
        if self.resource is None:
            return f'{self.verb} on path "{self.path}"'
        where = f' in the namespace "{self.namespace}"' if self.namespace else " at the cluster scope"
        named = f' "{self.name}"' if self.name else ""
        return f'{self.verb} resource "{self.resource}" in API group "data.videoanalyzer.io"{named}{where}'


class Authorizer:
    def __init__(self, api: client.ApiClient, group: str, version: str) -> None:
        self._authorization = client.AuthorizationV1Api(api)
        self._group = group
        self._version = version
        self._cache: dict[tuple[User, Attributes], tuple[bool, str, float]] = {}
        self._pruned_at = time.monotonic()
        metrics.CACHE_ENTRIES.labels("data-api-authorizations").set_function(lambda: len(self._cache))

    async def allowed(self, user: User, attributes: Attributes) -> tuple[bool, str]:
        """Allowed for any name of the resource in the namespace (a rule without resourceNames) covers
        every name: that one decision is cached for all of them, so reading many objects costs one
        review, not one each. Only when it is refused is the named request asked about."""
        if attributes.name is not None:
            allowed, reason = await self._review(user, dataclasses.replace(attributes, name=None))
            if allowed:
                return allowed, reason
        return await self._review(user, attributes)

    async def _review(self, user: User, attributes: Attributes) -> tuple[bool, str]:
        key = (user, attributes)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() < cached[2]:
            return cached[0], cached[1]
        spec = client.V1SubjectAccessReviewSpec(
            user=user.name, groups=list(user.groups), extra={k: list(v) for k, v in user.extra} or None
        )
        if attributes.resource is None:
            spec.non_resource_attributes = client.V1NonResourceAttributes(
                path=attributes.path, verb=attributes.verb
            )
        else:
            spec.resource_attributes = client.V1ResourceAttributes(
                group=self._group,
                version=self._version,
                resource=attributes.resource,
                verb=attributes.verb,
                namespace=attributes.namespace,
                name=attributes.name,
            )
        review = await self._authorization.create_subject_access_review(
            client.V1SubjectAccessReview(spec=spec)
        )
        allowed, reason = bool(review.status.allowed), str(review.status.reason or "")
        now = time.monotonic()
        if now >= self._pruned_at + CACHE_SECONDS:  # decisions of users and namespaces met no more
            self._pruned_at = now
            self._cache = {k: decision for k, decision in self._cache.items() if now < decision[2]}
        self._cache[key] = (allowed, reason, now + CACHE_SECONDS)
        return allowed, reason
