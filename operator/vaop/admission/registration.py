"""The webhook's registration: the chart owns the ValidatingWebhookConfiguration, the operator keeps
its ``clientConfig`` current.

The configuration belongs to the Helm release, so ``helm uninstall`` removes it and no webhook is
left behind pointing at a deleted Service (templates/webhook.yaml holds the rules, the
failurePolicy and the matchConditions that leave the operator's own writes out). What only the
running operator knows it patches in, per webhook (strategic merge on the webhooks' names):

- ``caBundle``: the CA of the certificate it serves (its own CA, kept in a Secret; with
  cert-manager, cert-manager's cainjector fills it instead, and ``check_injected`` only waits for
  the CA to be there before the replica calls itself ready);
- ``url``, in local mode only: the apiserver on this host calls the operator's loopback port
  instead of the Service, which has no pods behind it there.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import pki
from ..runtime import retry

PATH = "/validate"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


class ConfigurationMissing(retry.Transient):
    """The chart's ValidatingWebhookConfiguration does not exist (yet: the chart makes it)."""


class CaNotInjected(retry.Transient):
    """cert-manager's cainjector has not put the serving certificate's CA into a registration yet."""


def check_injected(registration: str, bundles: Sequence[str | None], ca_pem: bytes) -> None:
    """Raise ``CaNotInjected`` unless every caBundle (base64, as the API returns them) holds the CA:
    until then the apiserver would refuse this replica's certificate."""
    if not all(b and pki.bundle_holds(base64.b64decode(b), ca_pem) for b in bundles):
        raise CaNotInjected(
            f"{registration}'s caBundle lacks the CA of the certificate served; cert-manager's "
            "cainjector writes it (is cainjector running, and the inject-ca-from annotation there?)"
        )


async def wait_for_injection(api: client.ApiClient, *, name: str, ca_pem: bytes) -> None:
    """With cert-manager: ``check_injected`` for every webhook of the configuration."""
    configuration = await client.AdmissionregistrationV1Api(api).read_validating_webhook_configuration(name)
    bundles = [w.client_config.ca_bundle for w in configuration.webhooks or []]
    check_injected(f"ValidatingWebhookConfiguration {name}", bundles, ca_pem)


def client_config_patch(
    configuration: client.V1ValidatingWebhookConfiguration, *, ca_pem: bytes, url: str | None
) -> dict[str, Any] | None:
    """The patch that points every webhook of ``configuration`` at this operator, or None if they do."""
    bundle = base64.b64encode(ca_pem).decode()
    changes = []
    for webhook in configuration.webhooks or []:
        current = webhook.client_config
        wanted: dict[str, Any] = {"caBundle": bundle}
        if url:
            wanted.update(url=url + PATH, service=None)
        up_to_date = current.ca_bundle == bundle and (
            not url or (current.url == url + PATH and not current.service)
        )
        if not up_to_date:
            changes.append({"name": webhook.name, "clientConfig": wanted})
    return {"webhooks": changes} if changes else None


async def point_at_operator(api: client.ApiClient, *, name: str, ca_pem: bytes, url: str | None) -> None:
    registration = client.AdmissionregistrationV1Api(api)
    try:
        configuration = await registration.read_validating_webhook_configuration(name)
    except ApiException as error:
        if error.status == 404:
            raise ConfigurationMissing(
                f"ValidatingWebhookConfiguration {name} does not exist: the chart makes it "
                "(webhook.enabled=true); reinstall or upgrade the release"
            ) from None
        raise
    patch = client_config_patch(configuration, ca_pem=ca_pem, url=url)
    if patch is not None:
        await registration.patch_validating_webhook_configuration(
            name, patch, _content_type=STRATEGIC_MERGE_PATCH
        )
