"""The operator patches only the clientConfig of the chart's webhook configuration, and only when needed."""

from __future__ import annotations

import base64

import pytest
from kubernetes_asyncio import client

from vaop import pki
from vaop.admission import registration

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
