"""The ValidatingWebhookConfiguration the operator keeps in place (and its caBundle current).

Safety, by construction:
- ``failurePolicy: Fail`` with a 5 s timeout: a guarded change never slips through unchecked;
- ``matchConditions`` leave the operator's own requests (and the garbage collector's and namespace
  controller's deletions) out entirely, so the operator's writes never wait on its own webhook and
  deletion works even while the operator is down;
- account DELETE is not in the rules at all; only labelled account-key Secrets are matched;
- kube-system and the operator's namespace are never sent to the webhook.
"""

from __future__ import annotations

import base64

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import labels, models

GARBAGE_COLLECTOR = "system:serviceaccount:kube-system:generic-garbage-collector"
NAMESPACE_CONTROLLER = "system:serviceaccount:kube-system:namespace-controller"
PATH = "/validate"


def _not_user(*usernames: str) -> list[client.V1MatchCondition]:
    return [
        client.V1MatchCondition(name=f"not-{i}", expression=f"request.userInfo.username != '{user}'")
        for i, user in enumerate(usernames)
    ]


def build(
    *,
    name: str,
    ca_pem: bytes,
    operator_username: str,
    operator_namespace: str,
    url: str | None,
    service: str | None,
) -> client.V1ValidatingWebhookConfiguration:
    if url:
        client_config = client.AdmissionregistrationV1WebhookClientConfig(url=url + PATH)
    else:
        client_config = client.AdmissionregistrationV1WebhookClientConfig(
            service=client.AdmissionregistrationV1ServiceReference(
                name=service, namespace=operator_namespace, path=PATH, port=443
            )
        )
    client_config.ca_bundle = base64.b64encode(ca_pem).decode()
    namespaces = client.V1LabelSelector(
        match_expressions=[
            client.V1LabelSelectorRequirement(
                key="kubernetes.io/metadata.name",
                operator="NotIn",
                values=["kube-system", operator_namespace],
            )
        ]
    )
    common = {
        "admission_review_versions": ["v1"],
        "client_config": client_config,
        "failure_policy": "Fail",
        "side_effects": "None",
        "timeout_seconds": 5,
        "namespace_selector": namespaces,
        "match_policy": "Equivalent",
    }
    accounts = client.V1ValidatingWebhook(
        name=f"accounts.{models.GROUP}",
        rules=[
            client.V1RuleWithOperations(
                api_groups=[models.GROUP],
                api_versions=["*"],
                resources=["videoanalyzeraccounts"],
                operations=["CREATE", "UPDATE"],
                scope="Namespaced",
            )
        ],
        match_conditions=_not_user(operator_username),
        **common,
    )
    secrets = client.V1ValidatingWebhook(
        name=f"account-key-secrets.{models.GROUP}",
        rules=[
            client.V1RuleWithOperations(
                api_groups=[""],
                api_versions=["v1"],
                resources=["secrets"],
                operations=["CREATE", "UPDATE", "DELETE"],
                scope="Namespaced",
            )
        ],
        object_selector=client.V1LabelSelector(match_labels={labels.COMPONENT: labels.ACCOUNT_KEY_COMPONENT}),
        match_conditions=_not_user(operator_username, GARBAGE_COLLECTOR, NAMESPACE_CONTROLLER),
        **common,
    )
    return client.V1ValidatingWebhookConfiguration(
        metadata=client.V1ObjectMeta(name=name, labels=dict(labels.MANAGED)), webhooks=[accounts, secrets]
    )


async def apply(api: client.ApiClient, configuration: client.V1ValidatingWebhookConfiguration) -> None:
    """Create the configuration, or replace it so its caBundle and rules are the current ones."""
    registration = client.AdmissionregistrationV1Api(api)
    name = configuration.metadata.name
    try:
        existing = await registration.read_validating_webhook_configuration(name)
    except ApiException as error:
        if error.status != 404:
            raise
        await registration.create_validating_webhook_configuration(configuration)
        return
    configuration.metadata.resource_version = existing.metadata.resource_version
    await registration.replace_validating_webhook_configuration(name, configuration)
