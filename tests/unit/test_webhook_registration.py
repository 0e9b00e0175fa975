"""The operator patches only the clientConfig of the chart's webhook configuration, and only when
needed; a replica is ready only once it can answer as it should."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from kubernetes_asyncio import client

from vaop import config, pki, platformkeys
from vaop.admission import lifecycle, registration

CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
BUNDLE = base64.b64encode(CA).decode()


def _configuration(
    *, ca_bundle: str | None, url: str | None = None
) -> client.V1ValidatingWebhookConfiguration:
    service = None if url else client.AdmissionregistrationV1ServiceReference(name="svc", namespace="ns")
    hooks = [
        client.V1ValidatingWebhook(
            name=name,
            admission_review_versions=["v1"],
            side_effects="None",
            client_config=client.AdmissionregistrationV1WebhookClientConfig(
                ca_bundle=ca_bundle, url=url, service=service
            ),
        )
        for name in ("accounts.videoanalyzer.io", "account-key-secrets.videoanalyzer.io")
    ]
    return client.V1ValidatingWebhookConfiguration(webhooks=hooks)


def test_a_fresh_configuration_gets_the_ca_bundle_of_every_webhook() -> None:
    patch = registration.client_config_patch(_configuration(ca_bundle=None), ca_pem=CA, url=None)
    assert patch == {
        "webhooks": [
            {"name": "accounts.videoanalyzer.io", "clientConfig": {"caBundle": BUNDLE}},
            {"name": "account-key-secrets.videoanalyzer.io", "clientConfig": {"caBundle": BUNDLE}},
        ]
    }


def test_an_up_to_date_configuration_is_not_written() -> None:
    assert registration.client_config_patch(_configuration(ca_bundle=BUNDLE), ca_pem=CA, url=None) is None
    pointed = _configuration(ca_bundle=BUNDLE, url="https://127.0.0.1:9443/validate")
    assert registration.client_config_patch(pointed, ca_pem=CA, url="https://127.0.0.1:9443") is None


def test_local_mode_replaces_the_service_with_the_loopback_url() -> None:
    patch = registration.client_config_patch(
        _configuration(ca_bundle=BUNDLE), ca_pem=CA, url="https://127.0.0.1:1"
    )
    assert patch is not None
    for change in patch["webhooks"]:
        assert change["clientConfig"] == {
            "caBundle": BUNDLE,
            "url": "https://127.0.0.1:1/validate",
            "service": None,  # strategic merge: removes the Service reference
        }


def test_with_cert_manager_the_ca_must_be_in_every_bundle_before_the_replica_is_ready() -> None:
    """cainjector adds a new CA beside the old one: a bundle holding both counts; one without it,
    an empty one or one that is not PEM keeps the replica unready, saying what to check."""
    old, new = (pki.make_ca(name).cert_pem for name in ("old-ca", "new-ca"))
    merged = base64.b64encode(old + new).decode()
    registration.check_injected("APIService x", [merged, base64.b64encode(new).decode()], new)
    for bundles in ([merged, base64.b64encode(old).decode()], [None], [base64.b64encode(b"junk").decode()]):
        with pytest.raises(
            registration.CaNotInjected, match=r"APIService x's caBundle lacks the CA.*cainjector"
        ):
            registration.check_injected("APIService x", bundles, new)


async def test_a_replica_is_not_ready_until_it_has_read_the_platform_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restore right after `helm install --wait` must not meet a replica that would refuse every
    restored account key as PlatformKeyMissing: until the first read, the readiness check says so
    (and why a read fails); once read, a later failure keeps the keys known and the replica ready."""
    answers: list[Any] = [RuntimeError("secrets is forbidden"), {"1": b"k" * 32}, RuntimeError("gone")]
    reads: asyncio.Queue[int] = asyncio.Queue()

    async def infrastructure_versions(*_: Any) -> Any:
        answer = answers.pop(0) if answers else {"1": b"k" * 32}
        reads.put_nowait(len(answers))  # the reader handles the answer before the test wakes
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(platformkeys, "infrastructure_versions", infrastructure_versions)
    monkeypatch.setattr(lifecycle, "RETRY_PLATFORM_KEYS_SECONDS", 0.01)
    monkeypatch.setattr(lifecycle, "PLATFORM_KEYS_SECONDS", 0.01)
    webhook = lifecycle.Webhook(config.OperatorConfig(), api=None)
    webhook._problem = None  # registered: only the platform keys are left
    assert webhook.problem() == "the platform keys have not been read yet"
    reader = asyncio.create_task(webhook._read_platform_keys())
    try:
        await asyncio.wait_for(reads.get(), 1)
        assert "secrets is forbidden" in (webhook.problem() or "")
        await asyncio.wait_for(reads.get(), 1)
        assert webhook.problem() is None
        await asyncio.wait_for(reads.get(), 1)
        assert webhook.problem() is None
    finally:
        reader.cancel()
