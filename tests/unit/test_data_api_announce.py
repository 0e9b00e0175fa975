"""The data API announces itself on its APIService: at once while the aggregator holds it unavailable
(so the group is not answered 503 for the aggregator's back-off after a restart), and again once it
is Available (so the apiserver fetches its OpenAPI)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes_asyncio import client

from vaop.dataapi import lifecycle


class _APIServices:
    def __init__(self, availability: list[str]) -> None:
        self.availability = availability  # what each read finds: "True" or "False"
        self.touches: list[str] = []

    async def read_api_service(self, name: str) -> Any:
        status = self.availability.pop(0) if len(self.availability) > 1 else self.availability[0]
        return SimpleNamespace(
            status=SimpleNamespace(conditions=[SimpleNamespace(type="Available", status=status)])
        )

    async def patch_api_service(self, name: str, patch: dict[str, Any]) -> None:
        self.touches.append(patch["metadata"]["annotations"][lifecycle.ANNOUNCED])


@pytest.mark.parametrize(
    ("availability", "touches"),
    [
        (["True"], 1),  # served already: one touch, for the OpenAPI
        (["False", "False", "False", "True"], 2),  # a restart after an outage: one touch each way
    ],
)
async def test_the_apiservice_is_touched_while_unavailable_and_once_available(
    availability: list[str], touches: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = _APIServices(availability)
    monkeypatch.setattr(client, "ApiregistrationV1Api", lambda api: services)
    monkeypatch.setattr(asyncio, "sleep", _no_wait)
    data_api = object.__new__(lifecycle.DataApi)
    data_api._api = None
    data_api._options = SimpleNamespace(api_service="v1alpha1.data.videoanalyzer.io")  # type: ignore[assignment]
    await data_api._announce()
    assert len(services.touches) == touches
    assert len(set(services.touches)) == touches  # each touch changes the APIService


async def _no_wait(seconds: float) -> None:
    return None
