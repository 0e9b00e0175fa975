"""An installation upgraded from the operator before account IDs: every envelope and sealed object it
left (format 1, bound to metadata.uid) is moved to format 2 by the operator, each account keeps its
account key and its data reads back as it was."""

from __future__ import annotations

import base64
import json
from typing import Any

from kubernetes import client

from tests import helpers
from tests.integration import legacy, tenant
from tests.integration.conftest import Kubectl, OperatorProcess
from vaop import labels
from vaop.crypto import envelope


def assert_moved(admin: client.ApiClient, kubectl: Kubectl, namespace: str, was: legacy.Legacy) -> None:
    """Account, Secret and data in format 2, bound to the account ID the uid was; the same key."""

    def annotated() -> dict[str, Any] | None:
        account = helpers.get(admin, namespace, "VideoAnalyzerAccount", was.name)
        return (
            account
            if labels.ANNOTATION_ACCOUNT_ID in (account["metadata"].get("annotations") or {})
            else None
        )

    account = helpers.eventually(annotated, timeout=30)
    assert helpers.condition(account, "Ready")["status"] == "True"  # type: ignore[index]
    assert account["metadata"]["uid"] == was.uid
    assert tenant.account_id(account) == was.uid  # the account ID of an account from before IDs: its uid
    assert account["status"]["accountKey"]["keyCheckValue"] == was.key_check_value
    secret = client.CoreV1Api(admin).read_namespaced_secret(f"{was.name}-account-key", namespace)
    sealed = envelope.decode(base64.b64decode(secret.data[labels.ENVELOPE_DATA_KEY]))
    assert (sealed.version, sealed.account.id) == (2, was.uid)
    assert secret.metadata.annotations[labels.ANNOTATION_KEY_CHECK_VALUE] == was.key_check_value
    video = json.loads(kubectl("-n", namespace, "get", "video", was.video["name"], "-o", "json").stdout)
    assert video["spec"] == was.video["spec"]
    assert video["metadata"]["labels"] == was.video["metadata"]["labels"]
    assert video["metadata"]["uid"] == was.video["uid"]


def _sealed_formats(admin: client.ApiClient, namespace: str) -> dict[str, tuple[Any, Any, list[str]]]:
    items = helpers.custom(admin).list_namespaced_custom_object(
        "internal.videoanalyzer.io", "v1alpha1", namespace, "sealedobjects"
    )["items"]
    return {
        i["spec"]["accountName"]: (
            i["spec"]["format"],
            i["spec"].get("accountID"),
            [o["uid"] for o in i["metadata"].get("ownerReferences") or ()],
        )
        for i in items
    }


def test_an_upgrade_moves_every_envelope_and_sealed_object_to_format_2(
    admin: client.ApiClient, kubectl: Kubectl, namespace: str, keys_namespace: str, operator: OperatorProcess
) -> None:
    pem = tenant.rsa_pem(2048)
    tenant.make_vault(admin, namespace, "vault", keys_namespace=keys_namespace)
    tenant.put_key_version(admin, keys_namespace, "kek", 1, pem)
    tenant.make_key(admin, namespace, "key", vault="vault", key_name="kek")
    client.CoreV1Api(admin).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="tenant-id"))
    )
    tenant.grant(admin, keys_namespace=keys_namespace, identity_namespace=namespace, identity="tenant-id")
    with legacy.old_operator_leading(admin, operator) as old_operator:
        left = [legacy.provision(admin, old_operator, namespace, f"sk-{i}") for i in range(3)]
        left += [
            legacy.provision(
                admin,
                old_operator,
                namespace,
                f"ck-{i}",
                customer_key=("key", "vault", pem),
                identity="tenant-id",
            )
            for i in range(2)
        ]
    for was in left:
        assert_moved(admin, kubectl, namespace, was)
    uids = {was.name: was.uid for was in left}

    def data_moved() -> bool:
        return _sealed_formats(admin, namespace) == {name: (2, uid, [uid]) for name, uid in uids.items()}

    helpers.eventually(data_moved, timeout=30)
    # The identity a customer key wrapped them as is named now, in the envelope and the status.
    ck = helpers.get(admin, namespace, "VideoAnalyzerAccount", "ck-0")
    assert ck["status"]["accountKey"]["wrappedBy"]["identity"] == "tenant-id"
    # And the key opens for whoever holds both keys, independently of the operator.
    assert (
        envelope.key_check_value(tenant.open_account_key(admin, namespace, "ck-0", pem))
        == left[3].key_check_value
    )
    assert (
        envelope.key_check_value(tenant.open_account_key(admin, namespace, "sk-0")) == left[0].key_check_value
    )
