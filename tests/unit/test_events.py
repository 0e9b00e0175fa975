"""Events are best effort: one the apiserver refuses is logged, never raised into a reconciliation."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kubernetes_asyncio import client

from vaop import events


class _Response:
    """What the client returns when asked not to decode the response: read, then released."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.released = False

    async def __aenter__(self) -> _Response:
        return self

    async def __aexit__(self, *_: Any) -> None:
        self.released = True


@pytest.mark.parametrize("status", [201, 403, 422])
async def test_an_event_is_posted_or_its_refusal_logged(
    status: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    response = _Response(status)
    sent: list[client.CoreV1Event] = []

    async def create(self: Any, namespace: str, body: client.CoreV1Event, **options: Any) -> _Response:
        assert options == {"_preload_content": False}  # nothing reads the created Event back
        sent.append(body)
        return response

    monkeypatch.setattr(client.CoreV1Api, "create_namespaced_event", create)
    involved = client.V1ObjectReference(kind="VideoAnalyzerAccount", name="studio", namespace="t")
    with caplog.at_level(logging.WARNING, logger="vaop.events"):
        await events.post(None, involved, reason="AccountKeyCreated", message="made")
    assert [(e.reason, e.involved_object.name, e.type) for e in sent] == [
        ("AccountKeyCreated", "studio", "Normal")
    ]
    assert response.released  # the connection goes back to the pool
    refused = [r.getMessage() for r in caplog.records if r.name == "vaop.events"]
    assert refused == ([] if status < 300 else [f"Event AccountKeyCreated for t/studio not posted: {status}"])
