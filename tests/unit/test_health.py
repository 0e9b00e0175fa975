"""Readiness says what is wrong, by name, until nothing is; liveness only needs the loop to answer."""

from __future__ import annotations

import logging
import socket

import aiohttp
import pytest

from vaop import health


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_readyz_names_each_problem_until_all_are_fixed() -> None:
    state: dict[str, str | None] = {"webhook": "the configuration does not name this webhook's CA yet"}
    readiness = health.Readiness()
    readiness.add("webhook", lambda: state["webhook"])
    readiness.add("watches", lambda: None)
    port = _free_port()
    server = health.HealthServer(readiness, host="127.0.0.1", port=port)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as live:
                assert live.status == 200
            async with http.get(f"http://127.0.0.1:{port}/readyz") as ready:
                assert ready.status == 503
                assert await ready.text() == (
                    "not ready:\n- webhook: the configuration does not name this webhook's CA yet\n"
                )
            state["webhook"] = None
            async with http.get(f"http://127.0.0.1:{port}/readyz") as ready:
                assert ready.status == 200
    finally:
        await server.stop()


def test_changes_in_readiness_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    problem: list[str | None] = ["missing RBAC permissions: create serviceaccounts/token"]
    readiness = health.Readiness()
    readiness.add("permissions", lambda: problem[0])
    with caplog.at_level(logging.INFO, logger=health.__name__):
        readiness.log_changes()
        readiness.log_changes()
        problem[0] = None
        readiness.log_changes()
    assert [r.getMessage() for r in caplog.records] == [
        "Not ready (permissions): missing RBAC permissions: create serviceaccounts/token",
        "Ready: permissions",
    ]
