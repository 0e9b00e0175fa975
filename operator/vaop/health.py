"""Liveness (/healthz) and readiness (/readyz) on the health port.

Liveness says only that the event loop answers: restarting a replica that cannot reach the
apiserver helps nothing. Readiness is a set of named checks, each saying in a sentence what is
wrong or nothing; the pod is ready (its webhook gets traffic, ``helm install --wait`` and GitOps
sync waves move on) only when every check passes. A change in what is wrong is logged, so a pod
that stays unready says why in its log as well as in its probe's answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from .runtime import retry

logger = logging.getLogger(__name__)

Check = Callable[[], str | None]  # None: fine; else what is wrong and how to fix it


class Readiness:
    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._last: dict[str, str] = {}

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    def problems(self) -> dict[str, str]:
        found = {}
        for name, check in self._checks.items():
            problem = check()
            if problem is not None:
                found[name] = problem
        return found

    def log_changes(self) -> None:
        problems = self.problems()
        if problems == self._last:
            return
        if problems:
            for name, problem in sorted(problems.items()):
                if self._last.get(name) != problem:
                    logger.warning("Not ready (%s): %s", name, problem)
        else:
            logger.info("Ready: %s", ", ".join(sorted(self._checks)))
        self._last = problems

    async def watch(self, period: float = 2.0) -> None:
        async def log_changes() -> None:
            self.log_changes()

        await retry.every(period, log_changes, doing="Logging readiness")


class HealthServer:
    def __init__(self, readiness: Readiness, *, host: str, port: int) -> None:
        self._readiness = readiness
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        problems = self._readiness.problems()
        if not problems:
            return web.Response(text="ok\n")
        lines = "".join(f"- {name}: {problem}\n" for name, problem in sorted(problems.items()))
        return web.Response(status=503, text=f"not ready:\n{lines}")
