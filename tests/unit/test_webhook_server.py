"""The webhook's HTTPS server, called directly as an attacker would: malformed reviews get 400 or a
denial, never a crash and never an allow; only TLS 1.2 and later are spoken."""

from __future__ import annotations

import json
import socket
import ssl
import warnings
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaop import pki
from vaop.admission import server
from vaop.domain import admission

VIEW = admission.View(
    account_state={("t", "locked"): ("KeyInaccessible", "AccessDenied")},
    accounts={},
    customer_keys={},
    vaults={},
    operator_username="system:serviceaccount:vaop-system:video-analyzer-operator",
    system_deleters=admission.SYSTEM_DELETERS,
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def webhook() -> AsyncIterator[str]:
    ca = pki.make_ca("test-ca")
    serving = pki.issue_serving(ca, dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    port = _port()
    hook = server.WebhookServer(lambda: VIEW, serving=serving, host="127.0.0.1", port=port)
    await hook.start()
    yield f"https://127.0.0.1:{port}/validate"
    await hook.stop()


async def _post(url: str, body: bytes) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, ssl=False) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


def _review(request: Any) -> bytes:
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    ).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"request": "string"}',
        _review({"kind": {"kind": "VideoAnalyzerAccount"}}),  # no uid
        _review({"uid": 5}),
        _review({"uid": "u", "kind": "VideoAnalyzerAccount"}),
        _review({"uid": "u", "object": ["a"]}),
    ],
)
async def test_malformed_reviews_get_400(webhook: str, body: bytes) -> None:
    status, _ = await _post(webhook, body)
    assert status == 400


async def test_a_review_that_cannot_be_understood_is_denied_not_allowed(webhook: str) -> None:
    request = {
        "uid": "u1",
        "kind": {"kind": "VideoAnalyzerAccount"},
        "operation": "UPDATE",
        "namespace": "t",
        "name": "x",
        "object": {"metadata": {"name": "x"}, "spec": {"encryption": {"type": "NoSuchType"}}},
        "oldObject": {"metadata": {"name": "x"}, "spec": {}},
        "userInfo": {"username": "mallory"},
    }
    status, answer = await _post(webhook, _review(request))
    assert status == 200
    assert answer["response"] == {
        "uid": "u1",
        "allowed": False,
        "status": {
            "code": 403,
            "reason": "Forbidden",
            "message": "the admission request could not be understood",
        },
    }


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    request=st.fixed_dictionaries(
        {"uid": st.text(min_size=1, max_size=8)},
        optional={
            "kind": st.fixed_dictionaries(
                {"kind": st.sampled_from(["VideoAnalyzerAccount", "Secret", "Other"])}
            ),
            "operation": st.sampled_from(["CREATE", "UPDATE", "DELETE", "nonsense"]),
            "namespace": st.sampled_from(["t", "other"]),
            "name": st.sampled_from(["locked", "free"]),
            "object": st.dictionaries(st.sampled_from(["metadata", "spec"]), JSON, max_size=2),
            "oldObject": st.dictionaries(st.sampled_from(["metadata", "spec"]), JSON, max_size=2),
            "userInfo": st.fixed_dictionaries({"username": st.text(max_size=10)}),
            "subResource": st.none() | st.text(max_size=5),
        },
    )
)
async def test_any_review_is_answered_with_its_uid(webhook: str, request: dict[str, Any]) -> None:
    status, answer = await _post(webhook, _review(request))
    assert status in (200, 400)
    if status == 200:
        assert answer["response"]["uid"] == request["uid"]
        assert isinstance(answer["response"]["allowed"], bool)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(new_spec=JSON, old_spec=JSON, metadata=JSON)
async def test_a_change_to_a_locked_account_is_never_let_through(
    webhook: str, new_spec: Any, old_spec: Any, metadata: Any
) -> None:
    request = {
        "uid": "u",
        "kind": {"kind": "VideoAnalyzerAccount"},
        "operation": "UPDATE",
        "namespace": "t",
        "name": "locked",
        "object": {"metadata": metadata, "spec": new_spec},
        "oldObject": {"metadata": metadata, "spec": old_spec},
        "userInfo": {"username": "mallory"},
    }
    status, answer = await _post(webhook, _review(request))
    deleting = isinstance(metadata, dict) and bool(metadata.get("deletionTimestamp"))
    if status == 200 and new_spec != old_spec and not deleting:
        assert answer["response"]["allowed"] is False


async def test_only_tls_1_2_and_later(webhook: str) -> None:
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():  # the very thing under test is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
        async with aiohttp.ClientSession() as http, http.post(webhook, data=b"{}", ssl=old):
            pass
