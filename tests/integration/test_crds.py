"""The CRDs as a user meets them through kubectl: discovery, examples, columns, readable refusals."""

from __future__ import annotations

import json

import pytest
import yaml
from kubernetes import client

from tests import helpers
from tests.integration.conftest import Kubectl
from vaopdev import binaries

EXAMPLES = binaries.REPO_ROOT / "examples"


def _apply(kubectl: Kubectl, namespace: str, manifest: str, *, check: bool = False) -> tuple[int, str]:
    result = kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest, check=check)
    return result.returncode, result.stderr + result.stdout


def test_three_crds_are_installed_by_the_chart(kubectl: Kubectl) -> None:
    names = kubectl("get", "crd", "-o", "name").stdout.split()
    assert {
        "customresourcedefinition.apiextensions.k8s.io/videoanalyzeraccounts.videoanalyzer.io",
        "customresourcedefinition.apiextensions.k8s.io/customerkeys.videoanalyzer.io",
        "customresourcedefinition.apiextensions.k8s.io/keyvaults.videoanalyzer.io",
    } <= set(names)


def test_short_names_and_category(kubectl: Kubectl) -> None:
    resources = kubectl("api-resources", "--api-group=videoanalyzer.io", "-o", "wide").stdout
    for short in ("vaa", "cmk", "kv"):
        assert f" {short} " in resources
    kubectl("get", "videoanalyzer", "-A")  # the category resolves


def test_examples_apply(kubectl: Kubectl, operator: object) -> None:
    kubectl("apply", "-f", str(EXAMPLES))
    try:
        table = kubectl("get", "videoanalyzeraccounts", "-n", "tenant-a").stdout
        header = table.splitlines()[0].split()
        assert header == ["NAME", "ENCRYPTION", "KEY", "VERSION", "STATE", "AGE"]
        assert kubectl("get", "customerkeys", "-n", "tenant-a").stdout.splitlines()[0].split() == [
            "NAME",
            "VAULT",
            "KEY",
            "VERSION",
            "TYPE",
            "SIZE",
            "READY",
            "AGE",
        ]
    finally:
        kubectl("delete", "namespace", "tenant-a", "--wait=false")


def test_every_example_field_is_in_the_schema(kubectl: Kubectl, namespace: str) -> None:
    """Server-side field validation refuses unknown fields, so examples cannot drift from the CRDs."""
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or not doc["apiVersion"].startswith("videoanalyzer.io/"):
                continue  # the CRDs' kinds; the data kinds' examples are tested in test_data_api
            doc["metadata"]["namespace"] = namespace
            kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", stdin=json.dumps(doc))


ACCOUNT = """
apiVersion: videoanalyzer.io/v1alpha1
kind: VideoAnalyzerAccount
metadata: {{name: {name}}}
spec: {spec}
"""
VAULT = """
apiVersion: videoanalyzer.io/v1alpha1
kind: KeyVault
metadata: {{name: v}}
spec: {spec}
"""


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        (
            ACCOUNT.format(name="a", spec="{region: westeurope, encryption: {type: CustomerKey}}"),
            "encryption.keyRef is required when encryption.type is CustomerKey",
        ),
        (
            ACCOUNT.format(
                name="a", spec="{region: westeurope, encryption: {type: SystemKey, keyRef: {name: k}}}"
            ),
            "encryption.keyRef must be omitted when encryption.type is SystemKey",
        ),
        (
            ACCOUNT.format(name="a", spec="{region: westeurope, encryption: {type: Vault}}"),
            'Unsupported value: "Vault"',
        ),
        (ACCOUNT.format(name="a", spec="{encryption: {type: SystemKey}}"), "spec.region: Required value"),
        (
            ACCOUNT.format(name="a" * 64, spec="{region: westeurope}"),
            "account names are DNS labels of at most 63 characters",
        ),
        (
            ACCOUNT.format(name="a.b", spec="{region: westeurope}"),
            "account names are DNS labels of at most 63 characters",
        ),
        (
            VAULT.format(spec="{region: westeurope, provider: {}}"),
            "set exactly one provider block (kubernetes, openbao, pkcs11 or azureKeyVault)",
        ),
        (
            VAULT.format(
                spec="{region: westeurope, provider: {kubernetes: {}, openbao: {address: x, role: r}}}"
            ),
            "set exactly one provider block",
        ),
        (
            VAULT.format(spec="{region: westeurope, provider: {openbao: {address: 'http://x'}}}"),
            "spec.provider.openbao.role: Required value",
        ),
        (
            VAULT.format(
                spec="{region: westeurope, provider: {azureKeyVault: {vaultURL: 'http://v.vault.azure.net/'}}}"
            ),
            "spec.provider.azureKeyVault.vaultURL in body should match",
        ),
        (
            """
apiVersion: videoanalyzer.io/v1alpha1
kind: CustomerKey
metadata: {name: k}
spec: {vaultRef: {name: v, namespace: other}, keyName: kek}
""",
            "references never cross namespaces: vaultRef names a KeyVault in this object's own namespace",
        ),
        (
            ACCOUNT.format(
                name="a",
                spec="{region: westeurope, encryption: {type: CustomerKey, keyRef: {name: k, namespace: b}}}",
            ),
            "references never cross namespaces: keyRef names a CustomerKey",
        ),
        (
            ACCOUNT.format(
                name="a",
                spec="{region: westeurope, encryption: {identity: {serviceAccountName: s, namespace: b}}}",
            ),
            "references never cross namespaces: identity names a ServiceAccount",
        ),
        (
            ACCOUNT.format(
                name="a",
                spec="{region: westeurope, encryption: {identity: {serviceAccountName: 'system:sa:b:s'}}}",
            ),
            "spec.encryption.identity.serviceAccountName in body should match",
        ),
    ],
    ids=[
        "customer-key-without-keyref",
        "system-key-with-keyref",
        "unknown-encryption-type",
        "missing-region",
        "account-name-too-long",
        "account-name-not-a-dns-label",
        "no-provider",
        "two-providers",
        "openbao-without-role",
        "azure-vault-url-without-https",
        "cross-namespace-vault",
        "cross-namespace-key",
        "cross-namespace-identity",
        "identity-named-as-a-user",
    ],
)
def test_invalid_specs_are_refused_with_a_readable_message(
    kubectl: Kubectl, namespace: str, manifest: str, expected: str
) -> None:
    code, output = _apply(kubectl, namespace, manifest)
    assert code != 0
    assert expected in output


def test_a_namespace_in_a_reference_is_refused_by_every_client(
    admin: client.ApiClient, namespace: str
) -> None:
    """Clients without strict field validation (the Python client, controllers) would have the field
    dropped silently and the reference resolved in this namespace: the CRD refuses it instead."""
    spec = {"vaultRef": {"name": "v", "namespace": "other"}, "keyName": "kek"}
    with pytest.raises(client.ApiException) as refused:
        helpers.create(admin, namespace, "CustomerKey", "k", spec)
    assert refused.value.status == 422
    assert "references never cross namespaces" in refused.value.body


def test_region_is_immutable(kubectl: Kubectl, namespace: str) -> None:
    _apply(kubectl, namespace, ACCOUNT.format(name="a", spec="{region: westeurope}"), check=True)
    code, output = _apply(kubectl, namespace, ACCOUNT.format(name="a", spec="{region: eastus}"))
    assert code != 0
    assert "region is immutable" in output


def test_encryption_defaults_to_system_key(kubectl: Kubectl, namespace: str) -> None:
    _apply(kubectl, namespace, ACCOUNT.format(name="a", spec="{region: westeurope}"), check=True)
    account = json.loads(kubectl("get", "vaa", "a", "-n", namespace, "-o", "json").stdout)
    assert account["spec"]["encryption"] == {"type": "SystemKey"}


def test_key_vault_status_shows_provider_and_protection(
    kubectl: Kubectl, namespace: str, operator: object
) -> None:
    manifest = VAULT.format(
        spec="{region: westeurope, provider: {kubernetes: {softDelete: true, purgeProtection: true}}}"
    )
    _apply(kubectl, namespace, manifest, check=True)

    def status() -> dict[str, object] | None:
        vault = json.loads(kubectl("get", "kv", "v", "-n", namespace, "-o", "json").stdout)
        return vault.get("status") if vault.get("status", {}).get("conditions") else None

    shown = helpers.eventually(status)
    assert (shown["provider"], shown["softDelete"], shown["purgeProtection"]) == ("kubernetes", True, True)
    row = kubectl("get", "kv", "v", "-n", namespace).stdout.splitlines()[1].split()
    assert row[1:6] == ["kubernetes", "westeurope", "true", "true", "True"]
