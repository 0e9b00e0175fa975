"""Small helpers shared by the tests: waiting for a condition, reading custom resources, serving
HTTP on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from aiohttp import web
from kubernetes import client

from vaop import models

T = TypeVar("T")

PLURALS = {
    "VideoAnalyzerAccount": "videoanalyzeraccounts",
    "CustomerKey": "customerkeys",
    "KeyVault": "keyvaults",
}


async def until(predicate: Callable[[], bool], within: float) -> float:
    """Await until ``predicate`` holds (checked every 20 ms); the seconds that took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            raise AssertionError(f"not true within {within}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def eventually(probe: Callable[[], T | None], *, timeout: float = 30, interval: float = 0.25) -> T:
    """Call ``probe`` until it returns something truthy; fail with the last value or error."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except AssertionError as error:
            last = error
        else:
            if value:
                return value
            last = value
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout}s; last: {last!r}")


@contextlib.asynccontextmanager
async def serving(
    app: web.Application, *, port: int = 0, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """``app`` served on loopback (``port`` 0: any free one) while the block runs; yields the port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def create(
    api: client.ApiClient, namespace: str, kind: str, name: str, spec: dict[str, Any]
) -> dict[str, Any]:
    body = {"apiVersion": models.API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}
    return custom(api).create_namespaced_custom_object(  # type: ignore[no-any-return]
        models.GROUP, models.VERSION, namespace, PLURALS[kind], body
    )


def get(api: client.ApiClient, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return custom(api).get_namespaced_custom_object(  # type: ignore[no-any-return]
        models.GROUP, models.VERSION, namespace, PLURALS[kind], name
    )


def read_at(api: client.ApiClient, path: str, resource_version: str | None) -> Any:
    """GET ``path`` at a resourceVersion, which the client's own GET methods cannot send (ApiException
    on an error status, as theirs)."""
    query = [("resourceVersion", resource_version)] if resource_version is not None else []
    request = api.param_serialize("GET", path, query_params=query, auth_settings=["BearerToken"])
    response = api.call_api(*request)
    response.read()
    return api.response_deserialize(response, {"200": "object"}).data


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for entry in obj.get("status", {}).get("conditions", []):
        if entry["type"] == type_:
            return entry  # type: ignore[no-any-return]
    return None


def platform_key_backup(namespace: str) -> list[str]:
    """kubectl's arguments for the platform-key backup docs/operations.md gives (YAML of the Secrets)."""
    return ["-n", namespace, "get", "secret", "-l", "videoanalyzer.io/component=platform-key", "-o", "yaml"]
