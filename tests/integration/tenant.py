"""What a tenant does by hand: key Secrets (as with openssl + kubectl), vaults, keys, RBAC grants."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from kubernetes import client

from tests import helpers
from vaop import labels, platformkeys
from vaop.crypto import envelope
from vaop.crypto import rsa as rsa_wrap
from vaop.providers import kubernetes as kubernetes_provider


def rsa_pem(bits: int) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def ec_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def put_key_version(
    admin: client.ApiClient, namespace: str, key_name: str, version: int, pem: bytes, *, enabled: bool = True
) -> None:
    annotations = {} if enabled else {kubernetes_provider.ANNOTATION_ENABLED: "false"}
    client.CoreV1Api(admin).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=f"{key_name}-v{version}",
                labels={
                    kubernetes_provider.LABEL_KEY_NAME: key_name,
                    kubernetes_provider.LABEL_KEY_VERSION: str(version),
                },
                annotations=annotations,
            ),
            data={"key.pem": base64.b64encode(pem).decode()},
        ),
    )


def make_vault(
    admin: client.ApiClient,
    namespace: str,
    name: str,
    *,
    keys_namespace: str,
    region: str = "westeurope",
    soft_delete: bool = True,
    purge_protection: bool = True,
) -> None:
    block = {"namespace": keys_namespace, "softDelete": soft_delete, "purgeProtection": purge_protection}
    helpers.create(admin, namespace, "KeyVault", name, {"region": region, "provider": {"kubernetes": block}})


def make_key(
    admin: client.ApiClient, namespace: str, name: str, *, vault: str, key_name: str, version: str = ""
) -> None:
    spec = {"vaultRef": {"name": vault}, "keyName": key_name}
    if version:
        spec["keyVersion"] = version
    helpers.create(admin, namespace, "CustomerKey", name, spec)


def grant(admin: client.ApiClient, *, keys_namespace: str, identity_namespace: str, identity: str) -> None:
    """The Role and RoleBinding a tenant writes so the account's identity may read its key Secrets."""
    rbac = client.RbacAuthorizationV1Api(admin)
    role = f"read-keys-{identity}"
    try:
        rbac.create_namespaced_role(
            keys_namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name=role),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["get", "list"])],
            ),
        )
    except client.ApiException as error:
        if error.status != 409:
            raise
    rbac.create_namespaced_role_binding(
        keys_namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=role),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=role),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name=identity, namespace=identity_namespace)
            ],
        ),
    )


def account(
    admin: client.ApiClient, namespace: str, name: str, *, key: str | None = None, region: str = "westeurope"
) -> None:
    encryption: dict[str, Any] = (
        {"type": "CustomerKey", "keyRef": {"name": key}} if key else {"type": "SystemKey"}
    )
    helpers.create(
        admin, namespace, "VideoAnalyzerAccount", name, {"region": region, "encryption": encryption}
    )


def shared_identity_accounts(admin: client.ApiClient, namespace: str, count: int) -> list[str]:
    """``count`` accounts on CustomerKey "key" as ServiceAccount "shared" (made here): one
    (identity, key) pair for all of them. Their names."""
    client.CoreV1Api(admin).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="shared"))
    )
    names = [f"acct-{i}" for i in range(count)]
    encryption = {
        "type": "CustomerKey",
        "keyRef": {"name": "key"},
        "identity": {"serviceAccountName": "shared"},
    }
    for name in names:
        helpers.create(
            admin, namespace, "VideoAnalyzerAccount", name, {"region": "westeurope", "encryption": encryption}
        )
    return names


def studio_on_customer_key(admin: client.ApiClient, namespace: str, keys_namespace: str) -> bytes:
    """Account "studio" Ready on CustomerKey "key" (kubernetes provider, key "kek" version 1 in
    ``keys_namespace``, read by its default identity). The key version's PEM."""
    pem = rsa_pem(2048)
    make_vault(admin, namespace, "vault", keys_namespace=keys_namespace)
    put_key_version(admin, keys_namespace, "kek", 1, pem)
    make_key(admin, namespace, "key", vault="vault", key_name="kek")
    grant(admin, keys_namespace=keys_namespace, identity_namespace=namespace, identity="studio-identity")
    account(admin, namespace, "studio", key="key")
    wait_condition(admin, namespace, "studio", "Ready", "True")
    return pem


def system_and_customer_key_accounts(
    admin: client.ApiClient, namespace: str, keys_namespace: str
) -> dict[str, str]:
    """Account "studio" on the system key and "byok" on CustomerKey "key" (kubernetes provider, key
    "kek" version 1 and the grant of byok-identity in ``keys_namespace``), both Ready: their
    key-check values by name."""
    account(admin, namespace, "studio")
    make_vault(admin, namespace, "vault", keys_namespace=keys_namespace)
    put_key_version(admin, keys_namespace, "kek", 1, rsa_pem(2048))
    make_key(admin, namespace, "key", vault="vault", key_name="kek")
    grant(admin, keys_namespace=keys_namespace, identity_namespace=namespace, identity="byok-identity")
    account(admin, namespace, "byok", key="key")
    ready = {
        name: wait_condition(admin, namespace, name, "Ready", "True", timeout=60)
        for name in ("studio", "byok")
    }
    return {name: a["status"]["accountKey"]["keyCheckValue"] for name, a in ready.items()}


def set_encryption(admin: client.ApiClient, namespace: str, name: str, *, key: str | None) -> None:
    encryption = (
        {"type": "CustomerKey", "keyRef": {"name": key}} if key else {"type": "SystemKey", "keyRef": None}
    )
    helpers.custom(admin).patch_namespaced_custom_object(
        "videoanalyzer.io",
        "v1alpha1",
        namespace,
        "videoanalyzeraccounts",
        name,
        {"spec": {"encryption": encryption}},
    )


def wait_condition(
    admin: client.ApiClient,
    namespace: str,
    name: str,
    type_: str,
    status: str,
    *,
    reason: str | None = None,
    timeout: float = 30,
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = helpers.get(admin, namespace, "VideoAnalyzerAccount", name)
        found = helpers.condition(obj, type_)
        if found and found["status"] == status and (reason is None or found["reason"] == reason):
            return obj
        return None

    return helpers.eventually(probe, timeout=timeout)


def key_status(admin: client.ApiClient, namespace: str, name: str = "key") -> dict[str, Any]:
    """The CustomerKey's status once a check has described the key (keyType and size are set)."""

    def probe() -> dict[str, Any] | None:
        status = helpers.get(admin, namespace, "CustomerKey", name).get("status") or {}
        return status if status.get("keyType") else None

    return helpers.eventually(probe)


def wait_locked(
    admin: client.ApiClient, namespace: str, name: str, reason: str, *, timeout: float = 30
) -> dict[str, Any]:
    """Wait until the account is KeyInaccessible for ``reason``."""
    return wait_condition(admin, namespace, name, "KeyInaccessible", "True", reason=reason, timeout=timeout)


def wait_wrapped_by(
    admin: client.ApiClient, namespace: str, name: str, *, timeout: float = 30, **wanted: str
) -> dict[str, Any]:
    """Wait until the account's key is wrapped as ``wanted`` says (type=..., keyVersion=...); the account."""

    def probe() -> dict[str, Any] | None:
        account = helpers.get(admin, namespace, "VideoAnalyzerAccount", name)
        wrapped = ((account.get("status") or {}).get("accountKey") or {}).get("wrappedBy") or {}
        return account if all(wrapped.get(k) == v for k, v in wanted.items()) else None

    return helpers.eventually(probe, timeout=timeout)


def vault_outage_locks_then_recovers(
    admin: client.ApiClient,
    namespace: str,
    name: str,
    *,
    take_away: Callable[[], None],
    bring_back: Callable[[], None],
) -> None:
    """The account's vault goes away: VaultDegraded within one check interval while the account stays
    Active, KeyInaccessible (VaultUnreachable) after the grace period; back: Ready with the same key."""
    from tests.integration.conftest import GRACE_PERIOD, WITHIN_ONE_INTERVAL

    kcv = wait_condition(admin, namespace, name, "Ready", "True")["status"]["accountKey"]["keyCheckValue"]
    take_away()
    try:
        degraded = wait_condition(
            admin,
            namespace,
            name,
            "VaultDegraded",
            "True",
            reason="VaultUnreachable",
            timeout=WITHIN_ONE_INTERVAL,
        )
        assert degraded["status"]["state"] == "Active"  # within the grace period nothing is locked
        locked = wait_locked(
            admin, namespace, name, "VaultUnreachable", timeout=GRACE_PERIOD + WITHIN_ONE_INTERVAL
        )
        assert locked["status"]["state"] == "KeyInaccessible"
    finally:
        bring_back()
    account = wait_condition(admin, namespace, name, "Ready", "True", timeout=WITHIN_ONE_INTERVAL)
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv


def account_id(account: dict[str, Any]) -> str:
    """The account ID the operator gave the account (its envelope and data are bound to it)."""
    found: str = account["metadata"]["annotations"][labels.ANNOTATION_ACCOUNT_ID]
    return found


def open_account_key(
    admin: client.ApiClient,
    namespace: str,
    name: str,
    private_pem: bytes | None = None,
    *,
    opener: Callable[[bytes], bytes] | None = None,
    operator_namespace: str = "vaop-system",
) -> bytes:
    """Open an account's envelope the way an auditor with both keys would, independent of the operator.

    The inner layer opens with ``private_pem`` (the tenant's key version), with ``opener`` (a vault
    whose private key never leaves it, asked to decrypt), or else with the platform's system key.
    """
    account = helpers.get(admin, namespace, "VideoAnalyzerAccount", name)
    secret = client.CoreV1Api(admin).read_namespaced_secret(f"{name}-account-key", namespace)
    sealed = envelope.decode(base64.b64decode(secret.data[labels.ENVELOPE_DATA_KEY]))
    core = client.CoreV1Api(admin)
    infra = core.read_namespaced_secret(platformkeys.INFRASTRUCTURE_SECRET, operator_namespace)
    outer_key = base64.b64decode(infra.data[sealed.outer_key_version])
    identity = envelope.AccountIdentity(namespace, name, account_id(account))
    inner = envelope.unseal(sealed, account=identity, outer_key=outer_key)
    if opener is not None:
        return opener(inner)
    if private_pem is None:
        system = core.read_namespaced_secret(
            f"vaop-system-key-v{sealed.inner.key_version}", operator_namespace
        )
        private_pem = base64.b64decode(system.data["key.pem"])
    private = serialization.load_pem_private_key(private_pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    return rsa_wrap.unwrap(private, inner, algorithm=sealed.inner.algorithm)
