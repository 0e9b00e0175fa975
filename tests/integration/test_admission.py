"""The admission webhook, driven with kubectl as a user would, against the real apiserver."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from kubernetes import client

from tests import helpers
from tests.integration import tenant
from tests.integration.conftest import WITHIN_ONE_INTERVAL, Kubectl, OperatorProcess

ACCOUNT_ON_FAR_KEY = """
apiVersion: videoanalyzer.io/v1alpha1
kind: VideoAnalyzerAccount
metadata: {{name: new, namespace: {namespace}}}
spec: {{region: westeurope, encryption: {{type: CustomerKey, keyRef: {{name: far-key}}}}}}
"""


def _locked_account(admin: client.ApiClient, namespace: str, keys_namespace: str, name: str) -> None:
    tenant.make_vault(admin, namespace, "vault", keys_namespace=keys_namespace)
    tenant.put_key_version(admin, keys_namespace, "kek", 1, tenant.rsa_pem(2048))
    tenant.make_key(admin, namespace, "key", vault="vault", key_name="kek")
    tenant.grant(
        admin, keys_namespace=keys_namespace, identity_namespace=namespace, identity=f"{name}-identity"
    )
    tenant.account(admin, namespace, name, key="key")
    tenant.wait_condition(admin, namespace, name, "Ready", "True")
    client.RbacAuthorizationV1Api(admin).delete_namespaced_role_binding(
        f"read-keys-{name}-identity", keys_namespace
    )
    tenant.wait_locked(admin, namespace, name, "AccessDenied", timeout=WITHIN_ONE_INTERVAL)


def _denied(result: object, *words: str) -> None:
    assert getattr(result, "returncode", 0) != 0, "the change was admitted"
    output = getattr(result, "stderr", "")
    assert "denied the request" in output, output
    for word in words:
        assert word in output, output


@pytest.mark.usefixtures("operator")
def test_inaccessible_account_allows_only_get_list_delete(
    admin: client.ApiClient, kubectl: Kubectl, namespace: str, keys_namespace: str
) -> None:
    _locked_account(admin, namespace, keys_namespace, "studio")
    ns = ["-n", namespace]
    _denied(
        kubectl(
            "patch",
            "vaa",
            "studio",
            *ns,
            "--type=merge",
            "-p",
            '{"spec":{"encryption":{"type":"SystemKey","keyRef":null}}}',
            check=False,
        ),
        "KeyInaccessible",
        "AccessDenied",
    )
    _denied(kubectl("label", "vaa", "studio", *ns, "team=video", check=False), "KeyInaccessible")
    _denied(kubectl("annotate", "vaa", "studio", *ns, "note=x", check=False), "KeyInaccessible")
    manifest = json.dumps(helpers.get(admin, namespace, "VideoAnalyzerAccount", "studio") | {"status": {}})
    manifest_obj = json.loads(manifest)
    manifest_obj["metadata"] = {"name": "studio", "labels": {"applied": "yes"}}
    _denied(kubectl("apply", *ns, "-f", "-", stdin=json.dumps(manifest_obj), check=False), "KeyInaccessible")
    # A dry run gets the same answer.
    _denied(
        kubectl("label", "vaa", "studio", *ns, "team=video", "--dry-run=server", check=False),
        "KeyInaccessible",
    )
    assert "studio" in kubectl("get", "vaa", "studio", *ns).stdout
    assert "studio" in kubectl("get", "vaa", *ns).stdout

    # After recovery the same change is admitted.
    tenant.grant(
        admin, keys_namespace=keys_namespace, identity_namespace=namespace, identity="studio-identity"
    )
    tenant.wait_condition(admin, namespace, "studio", "Ready", "True", timeout=WITHIN_ONE_INTERVAL)
    kubectl("label", "vaa", "studio", *ns, "team=video")

    # Delete always completes, also while locked.
    tenant.account(admin, namespace, "other", key="key")
    tenant.wait_locked(admin, namespace, "other", "AccessDenied", timeout=WITHIN_ONE_INTERVAL)
    kubectl("delete", "vaa", "other", *ns, "--timeout=60s")


@pytest.mark.usefixtures("operator")
def test_moving_to_an_unusable_key_is_denied_with_its_reason(
    admin: client.ApiClient, kubectl: Kubectl, namespace: str, keys_namespace: str
) -> None:
    tenant.make_vault(admin, namespace, "vault", keys_namespace=keys_namespace)
    tenant.put_key_version(admin, keys_namespace, "ec", 1, tenant.ec_pem())
    tenant.make_key(admin, namespace, "ec-key", vault="vault", key_name="ec")
    tenant.grant(
        admin, keys_namespace=keys_namespace, identity_namespace=namespace, identity="probe-identity"
    )
    tenant.account(admin, namespace, "probe", key="ec-key")  # the first use reveals what the key is
    tenant.wait_condition(admin, namespace, "probe", "Ready", "False", reason="KeyUnsupported")
    tenant.account(admin, namespace, "studio")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    patch = json.dumps({"spec": {"encryption": {"type": "CustomerKey", "keyRef": {"name": "ec-key"}}}})
    _denied(
        kubectl("patch", "vaa", "studio", "-n", namespace, "--type=merge", "-p", patch, check=False),
        "KeyUnsupported",
        "EC key",
    )

    tenant.make_vault(admin, namespace, "far", keys_namespace=keys_namespace, region="eastus")
    tenant.make_key(admin, namespace, "far-key", vault="far", key_name="ec")
    # Admission answers from the operator's in-memory view, which sees a new KeyVault a moment after
    # it is stored: probe with server-side dry runs (no side effects) until it does.
    probe = ACCOUNT_ON_FAR_KEY.format(namespace=namespace)
    helpers.eventually(
        lambda: kubectl("apply", "--dry-run=server", "-f", "-", stdin=probe, check=False).returncode != 0
    )
    with pytest.raises(client.ApiException) as denied:
        tenant.account(admin, namespace, "new", key="far-key")
    body = str(denied.value.body)
    assert "denied the request" in body and "region eastus" in body and "is in westeurope" in body


@pytest.mark.usefixtures("operator")
def test_account_key_secrets_are_changed_only_by_the_operator(
    admin: client.ApiClient, kubectl: Kubectl, namespace: str
) -> None:
    tenant.account(admin, namespace, "studio")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    ns = ["-n", namespace]
    _denied(
        kubectl("annotate", "secret", "studio-account-key", *ns, "x=y", check=False),
        "only the video-analyzer operator",
    )
    _denied(
        kubectl("delete", "secret", "studio-account-key", *ns, check=False),
        "Delete the VideoAnalyzerAccount instead",
    )
    # Garbage collection (the account's deletion) still removes it.
    kubectl("delete", "vaa", "studio", *ns)
    helpers.eventually(
        lambda: "studio-account-key" not in kubectl("get", "secrets", *ns, "-o", "name").stdout, timeout=60
    )


def test_namespace_deletion_completes_with_guarded_objects(
    admin: client.ApiClient, kubectl: Kubectl, operator: OperatorProcess
) -> None:
    name = f"gone-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    tenant.account(admin, name, "studio")
    tenant.wait_condition(admin, name, "studio", "Ready", "True")
    kubectl("delete", "namespace", name, "--timeout=90s")


def test_with_the_operator_stopped_unguarded_work_and_deletion_go_on(
    admin: client.ApiClient, kubectl: Kubectl, namespace: str, operator: OperatorProcess
) -> None:
    tenant.account(admin, namespace, "studio")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    operator.stop()
    try:
        kubectl("create", "configmap", "plain", "-n", namespace, "--from-literal=a=b")
        kubectl("create", "secret", "generic", "plain", "-n", namespace, "--from-literal=a=b")
        kubectl("label", "customerkeys", "--all", "-n", namespace, "x=y")  # not guarded
        started = time.monotonic()
        kubectl("delete", "vaa", "studio", "-n", namespace, "--timeout=60s")
        helpers.eventually(
            lambda: (
                "studio-account-key" not in kubectl("get", "secrets", "-n", namespace, "-o", "name").stdout
            ),
            timeout=60,
        )
        assert time.monotonic() - started < 60
        # A SystemKey account has nothing for the webhook to check, so its create does not need it;
        # a CustomerKey account's does, and failurePolicy Fail refuses it while no replica answers.
        tenant.account(admin, namespace, "later")
        refused = kubectl(
            "apply", "-f", "-", stdin=ACCOUNT_ON_FAR_KEY.format(namespace=namespace), check=False
        )
        assert refused.returncode != 0 and "failed calling webhook" in refused.stderr, refused.stderr
    finally:
        operator.start()
    tenant.wait_condition(admin, namespace, "later", "Ready", "True")
