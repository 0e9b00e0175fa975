"""The webhook's HTTPS server: AdmissionReview in, the domain's verdict out.

Decisions use only the in-memory view (``domain.admission.View``), never a vault call, so an
admission answer takes microseconds and does not depend on any vault being up. Dry-run requests
get the same answer; the webhook has no side effects.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .. import metrics, pki
from ..domain import admission
from . import tls
from .registration import PATH

logger = logging.getLogger(__name__)


def _response(uid: str, verdict: admission.Verdict) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": verdict.allowed}
    if not verdict.allowed:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": verdict.message}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


class WebhookServer:
    def __init__(
        self, view: Callable[[], admission.View], *, serving: pki.KeyPair, host: str, port: int
    ) -> None:
        self._view = view
        self._serving = serving
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._context: ssl.SSLContext | None = None

    def reload(self, serving: pki.KeyPair) -> None:
        """Serve a renewed certificate: new TLS connections get it, open ones finish with the old."""
        if serving != self._serving and self._context is not None:
            tls.load_serving(self._context, serving)
            self._serving = serving
            logger.info("Admission webhook certificate reloaded")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self._context = tls.server_context(self._serving)
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=self._context)
        await site.start()
        logger.info("Admission webhook listening on https://%s:%d%s", self._host, self._port, PATH)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            admission_request = _request_of(await request.json())
        except ValueError as error:
            return web.json_response(
                {"error": f"expected an admission.k8s.io/v1 AdmissionReview: {error}"}, status=400
            )
        try:
            verdict = admission.review(admission_request, self._view())
        except Exception as error:  # a request the apiserver would never send: refuse it, never allow
            logger.warning("Malformed admission request refused (%s)", error.__class__.__name__)
            verdict = admission.Verdict(False, "the admission request could not be understood", "BadRequest")
        kind = _known((admission_request.get("kind") or {}).get("kind"), _KINDS)
        operation = _known(admission_request.get("operation"), _OPERATIONS)
        metrics.ADMISSIONS.labels(kind, operation, str(verdict.allowed).lower()).inc()
        if not verdict.allowed:
            logger.info(
                "Denied %s %s %s/%s by %s: %s",
                operation,
                kind,
                admission_request.get("namespace"),
                admission_request.get("name"),
                (admission_request.get("userInfo") or {}).get("username"),
                verdict.reason,
            )
        return web.json_response(_response(admission_request["uid"], verdict))


_KINDS = frozenset({"VideoAnalyzerAccount", "Secret"})
_OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})


def _known(value: Any, known: frozenset[str]) -> str:
    """A metric label from a bounded set, whatever a caller sends."""
    return value if isinstance(value, str) and value in known else "other"


def _request_of(review: Any) -> dict[str, Any]:
    """The AdmissionReview's request, checked for the shape every later step relies on."""
    if not isinstance(review, dict) or not isinstance(review.get("request"), dict):
        raise ValueError("no request object")
    request: dict[str, Any] = review["request"]
    if not isinstance(request.get("uid"), str) or not request["uid"]:
        raise ValueError("the request has no uid")
    for field in ("kind", "userInfo", "object", "oldObject"):
        if request.get(field) is not None and not isinstance(request[field], dict):
            raise ValueError(f"request.{field} is not an object")
    return request
