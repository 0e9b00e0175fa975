"""The data API's HTTPS server: routing, authentication, authorization and content negotiation.

Paths, as the apiserver's own:
  /apis, /apis/data.videoanalyzer.io, /apis/data.videoanalyzer.io/v1alpha1      discovery
  /openapi/v3, /openapi/v3/apis/data.videoanalyzer.io/v1alpha1                   OpenAPI v3
  /apis/data.videoanalyzer.io/v1alpha1/{plural}                                  list, watch (all namespaces)
  /apis/data.videoanalyzer.io/v1alpha1/namespaces/{ns}/{plural}                  list, watch, create
  /apis/data.videoanalyzer.io/v1alpha1/namespaces/{ns}/{plural}/{name}           get, update, patch, delete
Responses are JSON, or a meta.k8s.io/v1 Table when the client asks for one (kubectl get); errors
are Status objects.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import yaml
from aiohttp import web

from .. import metrics
from ..runtime import retry
from . import auth, documents, kinds, patches, verbs
from .documents import ApiError

logger = logging.getLogger(__name__)
PREFIX = f"/apis/{kinds.GROUP}/{kinds.VERSION}"
WATCH_SECONDS = 1800
MAX_BODY = 3 * 1024 * 1024  # the apiserver's own limit on a request body
BACKED_UP_SEALED = (
    "backup identities are served no AccessPolicies or Videos: back them up sealed, as the "
    "SealedObjects (internal.videoanalyzer.io) of the same namespace"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(document: Any, *, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    headers = {"Warning": ", ".join(f'299 - "{w}"' for w in warnings)} if warnings else None
    return web.Response(
        body=documents.encoded(document), status=status, headers=headers, content_type="application/json"
    )


def _wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return any(
        "as=Table" in part and "g=meta.k8s.io" in part and "v=v1" in part for part in accept.split(",")
    )


def _options(request: web.Request, user: auth.User) -> verbs.WriteOptions:
    query = request.query
    agent = request.headers.get("User-Agent", "unknown").split("/")[0]
    manager = query.get("fieldManager") or agent
    validation = query.get("fieldValidation", "Strict")
    if validation not in ("Strict", "Warn", "Ignore"):
        raise ApiError(400, f"fieldValidation must be Strict, Warn or Ignore, not {validation!r}")
    return verbs.WriteOptions(
        manager=manager,
        dry_run=query.get("dryRun") == "All",
        field_validation=validation,
        force=query.get("force") == "true",
    )


class DataServer:
    def __init__(
        self,
        service: verbs.DataService,
        authorizer: auth.Authorizer,
        request_header: Callable[[], auth.RequestHeaderConfig | None],
        *,
        host: str,
        port: int,
        context: ssl.SSLContext,
        backup_identities: frozenset[str] = frozenset(),
    ) -> None:
        self._service = service
        self._backup_identities = backup_identities
        self._authorizer = authorizer
        self._request_header = request_header
        self._host = host
        self._port = port
        self._context = context
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(middlewares=[self._errors], client_max_size=MAX_BODY)
        routes = [
            web.get("/apis", self._discovery(documents.group_list)),
            web.get(f"/apis/{kinds.GROUP}", self._discovery(documents.group)),
            web.get(PREFIX, self._discovery(documents.resource_list)),
            web.get("/openapi/v2", self._discovery(documents.openapi_v2)),
            web.get("/openapi/v3", self._discovery(documents.openapi_index)),
            web.get(f"/openapi/v3{PREFIX}", self._discovery(documents.openapi)),
            web.get(PREFIX + "/{plural}", self._collection),
            web.get(PREFIX + "/namespaces/{namespace}/{plural}", self._collection),
            web.post(PREFIX + "/namespaces/{namespace}/{plural}", self._create),
            web.get(PREFIX + "/namespaces/{namespace}/{plural}/{name}", self._get),
            web.put(PREFIX + "/namespaces/{namespace}/{plural}/{name}", self._update),
            web.patch(PREFIX + "/namespaces/{namespace}/{plural}/{name}", self._patch),
            web.delete(PREFIX + "/namespaces/{namespace}/{plural}/{name}", self._delete),
        ]
        app.add_routes(routes)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port, ssl_context=self._context).start()
        logger.info("Data API (%s) listening on https://%s:%d", kinds.API_VERSION, self._host, self._port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- authentication, authorization, errors --------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as error:
            response = _json(error.status(), status=error.code)
            if error.code == 429:
                response.headers["Retry-After"] = "1"  # client-go retries on its own
            return response
        except web.HTTPRequestEntityTooLarge:
            too_large = ApiError(
                413, f"the request body is larger than {MAX_BODY} bytes", reason="RequestEntityTooLarge"
            )
            return _json(too_large.status(), status=413)
        except web.HTTPException:
            raise
        except Exception as error:
            why = retry.unavailable(error)  # asked on the request's behalf (a review, a read)
            if why is not None:
                logger.warning("Data API: %s %s: %s", request.method, request.path, why)
                code = 429 if getattr(error, "status", None) == 429 else 503
                response = _json(ApiError(code, f"{why}; retry shortly").status(), status=code)
                response.headers["Retry-After"] = "1"
                return response
            logger.exception("Data API: %s %s failed", request.method, request.path)
            return _json(ApiError(500, "internal error; see the operator's log").status(), status=500)

    def _user(self, request: web.Request) -> auth.User:
        config = self._request_header()
        if config is None:
            raise ApiError(
                503, "the front proxy's CA (kube-system/extension-apiserver-authentication) is not loaded yet"
            )
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        try:
            return auth.authenticate(peer, request.headers, config)
        except auth.Unauthenticated as error:
            raise ApiError(401, f"Unauthorized: {error}") from None

    async def _authorize(self, request: web.Request, attributes: auth.Attributes) -> auth.User:
        user = self._user(request)
        allowed, reason = await self._authorizer.allowed(user, attributes)
        metrics.DATA_REQUESTS.labels(
            attributes.resource or "discovery", attributes.verb, str(allowed).lower()
        ).inc()
        if not allowed:
            detail = f": {reason}" if reason else ""
            raise ApiError(
                403,
                f'{attributes.describe()} is forbidden: User "{user.name}" cannot {attributes.verb}{detail}',
            )
        return user

    def _discovery(self, document: Callable[[], dict[str, Any]]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            await self._authorize(request, auth.Attributes(verb="get", path=request.path))
            return _json(document())

        return handler

    @staticmethod
    def _kind(request: web.Request) -> kinds.Kind:
        plural = request.match_info["plural"]
        kind = kinds.KINDS.get(plural)
        if kind is None:
            raise ApiError(404, f"the server could not find the requested resource ({plural}.{kinds.GROUP})")
        return kind

    # ---- verbs ---------------------------------------------------------------------------------------

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        kind = self._kind(request)
        namespace = request.match_info.get("namespace")
        watching = request.query.get("watch") in ("true", "1")
        user = await self._authorize(
            request, auth.Attributes("watch" if watching else "list", kind.plural, namespace)
        )
        query = request.query
        if user.name in self._backup_identities:
            return self._nothing_to_back_up(kind, watching)
        if watching:
            return await self._watch(request, kind, namespace)
        limit = int(query["limit"]) if query.get("limit", "").isdigit() else None
        objects, list_meta = await self._service.list_objects(
            kind,
            namespace,
            label_selector=query.get("labelSelector"),
            field_selector=query.get("fieldSelector"),
            limit=limit,
            token=query.get("continue"),
            resource_version=query.get("resourceVersion"),
        )
        if _wants_table(request):
            include = query.get("includeObject", "Metadata")
            return _json(documents.table(kind, objects, include_object=include, list_meta=list_meta))
        return _json(documents.object_list(kind, objects, list_meta))

    @staticmethod
    def _nothing_to_back_up(kind: kinds.Kind, watching: bool) -> web.StreamResponse:
        """What a backup tool is answered: no objects. It backs the data up sealed, as the
        SealedObjects (internal.videoanalyzer.io) in the same namespaces, so a backup never holds
        plaintext and stays under the account's key; a restore brings the SealedObjects back."""
        if watching:
            return web.Response(content_type="application/json", body=b"")  # a watch that ends at once
        return _json(documents.object_list(kind, [], {"resourceVersion": ""}), warnings=[BACKED_UP_SEALED])

    async def _watch(
        self, request: web.Request, kind: kinds.Kind, namespace: str | None
    ) -> web.StreamResponse:
        query = request.query
        seconds = int(query["timeoutSeconds"]) if query.get("timeoutSeconds", "").isdigit() else WATCH_SECONDS
        table = _wants_table(request)
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        )
        await response.prepare(request)
        events = self._service.watch(
            kind,
            namespace,
            resource_version=query.get("resourceVersion"),
            label_selector=query.get("labelSelector"),
            field_selector=query.get("fieldSelector"),
            seconds=seconds,
            bookmarks=query.get("allowWatchBookmarks") == "true",
        )
        try:
            include = query.get("includeObject", "Metadata")
            async for event in events:
                sent = event
                if table and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    sent = {
                        **event,
                        "object": documents.table(kind, [event["object"]], include_object=include),
                    }
                await response.write(documents.encoded(sent) + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client went away
        return response

    async def _get(self, request: web.Request) -> web.StreamResponse:
        kind = self._kind(request)
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        user = await self._authorize(request, auth.Attributes("get", kind.plural, namespace, name))
        if user.name in self._backup_identities:
            raise ApiError(404, f'{kind.plural}.{kinds.GROUP} "{name}" not found: {BACKED_UP_SEALED}')
        obj = await self._service.get(
            kind, namespace, name, resource_version=request.query.get("resourceVersion")
        )
        if _wants_table(request):
            return _json(
                documents.table(kind, [obj], include_object=request.query.get("includeObject", "Metadata"))
            )
        return _json(obj)

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            return json.loads(raw)
        except ValueError:
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as error:
                raise ApiError(400, f"the body is neither JSON nor YAML: {error}") from None

    async def _create(self, request: web.Request) -> web.StreamResponse:
        kind = self._kind(request)
        namespace = request.match_info["namespace"]
        user = await self._authorize(request, auth.Attributes("create", kind.plural, namespace))
        written = await self._service.create(
            kind, namespace, await self._body(request), _options(request, user)
        )
        return _json(written.obj, status=201, warnings=written.warnings)

    async def _update(self, request: web.Request) -> web.StreamResponse:
        kind = self._kind(request)
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        user = await self._authorize(request, auth.Attributes("update", kind.plural, namespace, name))
        written = await self._service.update(
            kind, namespace, name, body=await self._body(request), options=_options(request, user)
        )
        return _json(written.obj, warnings=written.warnings)

    async def _patch(self, request: web.Request) -> web.StreamResponse:
        kind = self._kind(request)
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        user = await self._authorize(request, auth.Attributes("patch", kind.plural, namespace, name))
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type == patches.APPLY and not request.query.get("fieldManager"):
            raise ApiError(422, "PATCH with apply-patch+yaml requires a fieldManager", kind=kind, name=name)
        written = await self._service.patch(
            kind,
            namespace,
            name,
            body=await request.read(),
            content_type=content_type,
            options=_options(request, user),
        )
        return _json(written.obj, status=201 if written.created else 200, warnings=written.warnings)

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        kind = self._kind(request)
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        await self._authorize(request, auth.Attributes("delete", kind.plural, namespace, name))
        raw = await request.read()
        options = json.loads(raw) if raw.strip() else {}
        preconditions = (options or {}).get("preconditions") or {}
        dry_run = request.query.get("dryRun") == "All" or "All" in ((options or {}).get("dryRun") or [])
        obj = await self._service.delete(
            kind,
            namespace,
            name,
            uid=preconditions.get("uid"),
            resource_version=preconditions.get("resourceVersion"),
            dry_run=dry_run,
        )
        return _json(documents.success(kind, name, obj["metadata"]["uid"]))
