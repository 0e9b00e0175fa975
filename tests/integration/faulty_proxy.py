"""A TLS proxy on loopback in front of kube-apiserver that fails a share of the requests it forwards.

A failed request is answered 429 (with Retry-After), 500 or 503 without reaching the apiserver, or,
for a write, forwarded and then answered 504: the apiserver did it, the client never hears so (the
hardest case for "no half state"). Watches are streamed through untouched once started. The proxy
serves a certificate of the control plane's CA, so a client's kubeconfig changes only its server.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from vaop import pki
from vaopdev import cluster

# Hop-by-hop and framing headers: each side of the proxy sets its own.
_NOT_FORWARDED = {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}


class FaultyProxy:
    def __init__(self, plane: cluster.ControlPlane, *, seed: int) -> None:
        assert plane.ca is not None
        self.upstream = plane.server
        self.ca = plane.ca
        self.share = 0.0  # of requests that fail
        self.lose_writes = True  # may a failed write be one done and answered 504?
        self.rng = random.Random(seed)
        self.counts: collections.Counter[str] = collections.Counter()
        self.routes: collections.Counter[str] = collections.Counter()  # requests by verb and path shape
        self.paths: collections.Counter[str] = collections.Counter()  # requests by verb and path
        self.port = cluster.free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tls = _serving_context(plane.ca)

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def kubeconfig(self, original: Path, folder: Path) -> Path:
        """A copy of ``original`` whose server is this proxy."""
        config = yaml.safe_load(original.read_text())
        for entry in config["clusters"]:
            entry["cluster"]["server"] = self.url
        return cluster.write_kubeconfig(folder / "through-proxy.kubeconfig", config)

    async def _serve(self) -> None:
        upstream_tls = ssl.create_default_context(cadata=self.ca.cert_pem.decode())
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=upstream_tls),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self._tls).start()

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # ---- requests ------------------------------------------------------------------------

    def _fault(self, request: web.Request) -> str:
        if self.rng.random() >= self.share:
            return ""
        watch = request.query.get("watch") in {"1", "true"}
        lost = self.lose_writes and request.method in _WRITES and not watch
        choices = ["429", "500", "503"] + (["lost"] if lost else [])
        return self.rng.choice(choices)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.counts["requests"] += 1
        watch = "watch" if request.query.get("watch") in {"1", "true"} else ""
        route = "/".join("*" if "-" in part else part for part in request.path.split("/"))
        self.routes[f"{request.method} {route} {watch}".strip()] += 1
        self.paths[f"{request.method} {request.path}"] += 1
        fault = self._fault(request)
        if fault and fault != "lost":
            self.counts[fault] += 1
            return _status(int(fault))
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        body = await request.read()
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body or None
        ) as upstream:
            if fault == "lost":
                await upstream.read()
                self.counts["lost"] += 1
                return _status(504)
            response = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in _NOT_FORWARDED},
            )
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionResetError, aiohttp.ClientError):
                pass  # the client or the apiserver hung up on a stream
            return response


def _serving_context(ca: pki.KeyPair) -> ssl.SSLContext:
    serving = pki.issue_serving(ca, dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as folder:
        cert, key = Path(folder, "tls.crt"), Path(folder, "tls.key")
        cert.write_bytes(serving.cert_pem)
        key.write_bytes(serving.key_pem)
        tls.load_cert_chain(cert, key)
    return tls


def _status(code: int) -> web.Response:
    reasons: dict[int, tuple[str, str]] = {
        429: ("TooManyRequests", "too many requests, please try again later"),
        500: ("InternalError", "an error on the server (injected) has prevented the request from succeeding"),
        503: ("ServiceUnavailable", "the server is currently unable to handle the request (injected)"),
        504: ("Timeout", "the server was unable to return a response in the time allotted (injected)"),
    }
    reason, message = reasons[code]
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    headers = {"Retry-After": "1"} if code == 429 else {}
    return web.Response(status=code, text=json.dumps(body), content_type="application/json", headers=headers)
