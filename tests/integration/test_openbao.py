"""The openbao provider end to end against a real OpenBao server and the real control plane."""

from __future__ import annotations

import asyncio
import base64

import pytest
from kubernetes import client

from tests import helpers
from tests.integration import tenant
from tests.integration.conftest import WITHIN_ONE_INTERVAL, OperatorProcess
from vaop import labels, metrics
from vaop.crypto import envelope
from vaop.providers import base
from vaop.providers import openbao as openbao_provider
from vaop.providers.addresses import AddressPolicy
from vaopdev import openbao

pytestmark = pytest.mark.usefixtures("operator")


def transit_vault(
    admin: client.ApiClient,
    namespace: str,
    bao_server: openbao.OpenBao,
    *,
    key_type: str = "rsa-2048",
    identity: str = "studio-identity",
) -> str:
    """Transit key, policy and role for ServiceAccount ``identity`` of ``namespace``; KeyVault "bao"
    and CustomerKey "key" on it. The transit key's name."""
    key = f"kek-{namespace}"
    bao_server.api("POST", f"transit/keys/{key}", {"type": key_type})
    bao_server.grant(policy=namespace, key=key)
    bao_server.role(name=namespace, namespace=namespace, service_account=identity, policy=namespace)
    helpers.create(
        admin,
        namespace,
        "KeyVault",
        "bao",
        {"region": "westeurope", "provider": {"openbao": {"address": bao_server.address, "role": namespace}}},
    )
    tenant.make_key(admin, namespace, "key", vault="bao", key_name=key)
    return key


def _inner_ciphertext(admin: client.ApiClient, namespace: str) -> bytes:
    secret = client.CoreV1Api(admin).read_namespaced_secret("studio-account-key", namespace)
    sealed = envelope.decode(base64.b64decode(secret.data[labels.ENVELOPE_DATA_KEY]))
    return sealed.ciphertext


def test_wrap_rotate_revoke_recover(
    admin: client.ApiClient, namespace: str, bao_server: openbao.OpenBao
) -> None:
    key = transit_vault(admin, namespace, bao_server)
    tenant.account(admin, namespace, "studio", key="key")
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    assert account["status"]["accountKey"]["wrappedBy"]["keyVersion"] == "1"
    kcv = account["status"]["accountKey"]["keyCheckValue"]
    status = tenant.key_status(admin, namespace)
    assert (status["keyType"], status["keySize"], status["currentVersion"]) == ("RSA", 2048, "1")

    bao_server.api("POST", f"transit/keys/{key}/rotate")
    account = tenant.wait_wrapped_by(admin, namespace, "studio", keyVersion="2", timeout=WITHIN_ONE_INTERVAL)
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv
    # The outer layer is ours; inside it, the vault's own ciphertext now names version 2 (made by rewrap).
    secret = client.CoreV1Api(admin).read_namespaced_secret("studio-account-key", namespace)
    sealed = envelope.decode(base64.b64decode(secret.data[labels.ENVELOPE_DATA_KEY]))
    assert sealed.inner.key_version == "2"

    bao_server.api("DELETE", f"sys/policies/acl/{namespace}")
    account = tenant.wait_locked(admin, namespace, "studio", "AccessDenied", timeout=WITHIN_ONE_INTERVAL)
    assert "Kubernetes-auth role" in helpers.condition(account, "KeyInaccessible")["message"]  # type: ignore[index]

    bao_server.grant(policy=namespace, key=key)
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True", timeout=WITHIN_ONE_INTERVAL)
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv


def test_deletable_key_is_refused(
    admin: client.ApiClient, namespace: str, bao_server: openbao.OpenBao
) -> None:
    key = transit_vault(admin, namespace, bao_server)
    bao_server.api("POST", f"transit/keys/{key}/config", {"deletion_allowed": True})
    tenant.account(admin, namespace, "studio", key="key")
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "False", reason="SoftDeleteDisabled")
    assert account["status"]["state"] == "Error"


def test_ec_transit_key_is_unsupported(
    admin: client.ApiClient, namespace: str, bao_server: openbao.OpenBao
) -> None:
    transit_vault(admin, namespace, bao_server, key_type="ecdsa-p256")
    tenant.account(admin, namespace, "studio", key="key")
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "False", reason="KeyUnsupported")
    assert "EC key" in helpers.condition(account, "Ready")["message"]  # type: ignore[index]


def test_deleted_key_locks_the_account(
    admin: client.ApiClient, namespace: str, bao_server: openbao.OpenBao
) -> None:
    key = transit_vault(admin, namespace, bao_server)
    tenant.account(admin, namespace, "studio", key="key")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    bao_server.api("POST", f"transit/keys/{key}/config", {"deletion_allowed": True})
    bao_server.api("DELETE", f"transit/keys/{key}")
    tenant.wait_locked(admin, namespace, "studio", "KeyNotFound", timeout=WITHIN_ONE_INTERVAL)


def test_server_stopped_past_the_grace_period_locks_and_restart_recovers(
    admin: client.ApiClient, namespace: str, bao_server: openbao.OpenBao
) -> None:
    """A real unreachable endpoint: the server process is stopped (connections refused), then restarted."""
    transit_vault(admin, namespace, bao_server)
    tenant.account(admin, namespace, "studio", key="key")
    tenant.vault_outage_locks_then_recovers(
        admin, namespace, "studio", take_away=bao_server.stop, bring_back=bao_server.start
    )


async def test_concurrent_rewraps_are_batched(
    admin: client.ApiClient, namespace: str, bao_server: openbao.OpenBao
) -> None:
    """A rotation re-wraps many accounts at once: OpenBao gets them as a few batch_input requests."""
    key = f"kek-{namespace}"
    bao_server.api("POST", f"transit/keys/{key}", {"type": "rsa-2048"})
    bao_server.grant(policy=namespace, key=key)
    client.CoreV1Api(admin).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="studio-identity"))
    )
    bao_server.role(name=namespace, namespace=namespace, service_account="studio-identity", policy=namespace)
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    token = client.CoreV1Api(admin).create_namespaced_service_account_token(
        "studio-identity", namespace, request
    )
    provider = openbao_provider.OpenBaoKeyProvider(
        address=bao_server.address,
        transit_mount="transit",
        auth_mount="kubernetes",
        role=namespace,
        service_account_token=token.status.token,
        identity="studio-identity",
        addresses=AddressPolicy(loopback=True),
    )
    v1 = await provider.resolve(key, None)
    account_keys = [envelope.new_account_key() for _ in range(40)]
    wrapped = [await provider.wrap(v1, k) for k in account_keys]
    bao_server.api("POST", f"transit/keys/{key}/rotate")
    v2 = base.KeyVersion(key, "2", v1.facts, True)
    before = metrics.VAULT_REQUESTS.labels("openbao", "rewrap")._value.get()
    rewrapped = await asyncio.gather(*(provider.rewrap(v2, w.ciphertext) for w in wrapped))
    sent = metrics.VAULT_REQUESTS.labels("openbao", "rewrap")._value.get() - before
    assert sent <= 2, sent
    for account_key, result in zip(account_keys, rewrapped, strict=True):
        assert result is not None and result.ciphertext.startswith(b"vault:v2:")
        assert await provider.unwrap(key, "2", result.ciphertext, algorithm=result.algorithm) == account_key
    await provider.close()


def _openbao_requests(operator: OperatorProcess) -> float:
    return operator.metric("vaop_vault_requests_total", provider="openbao")


def test_a_revoked_policy_locks_many_accounts_with_a_few_vault_requests(
    admin: client.ApiClient, namespace: str, bao_server: openbao.OpenBao, operator: OperatorProcess
) -> None:
    """SPEC: vault traffic grows with (identity, key) pairs, not with accounts; a refusal too. The
    accounts of one identity share the refused key read."""
    names = tenant.shared_identity_accounts(admin, namespace, 24)
    transit_vault(admin, namespace, bao_server, identity="shared")
    for name in names:
        tenant.wait_condition(admin, namespace, name, "Ready", "True")

    before = _openbao_requests(operator)
    bao_server.api("DELETE", f"sys/policies/acl/{namespace}")
    for name in names:
        tenant.wait_locked(admin, namespace, name, "AccessDenied", timeout=WITHIN_ONE_INTERVAL)
    made = _openbao_requests(operator) - before
    assert made >= 1, "the key monitor's check must have asked OpenBao"
    # The check and a few shared reads, where each account asking again would be 24 or more
    # (other tests' checks running meanwhile add one or two).
    assert made <= 8, made


def test_a_missing_role_is_one_refused_login_for_many_accounts(
    admin: client.ApiClient, namespace: str, bao_server: openbao.OpenBao, operator: OperatorProcess
) -> None:
    """The accounts of one identity share a refused login (the vault's Kubernetes-auth role does not
    exist): a few logins, not one per account."""
    names = tenant.shared_identity_accounts(admin, namespace, 24)
    before = _openbao_requests(operator)
    key = f"kek-{namespace}"
    bao_server.api("POST", f"transit/keys/{key}", {"type": "rsa-2048"})
    provider = {"openbao": {"address": bao_server.address, "role": f"{namespace}-missing"}}
    helpers.create(admin, namespace, "KeyVault", "bao", {"region": "westeurope", "provider": provider})
    tenant.make_key(admin, namespace, "key", vault="bao", key_name=key)
    for name in names:
        tenant.wait_locked(admin, namespace, name, "AccessDenied", timeout=WITHIN_ONE_INTERVAL)
    logins = _openbao_requests(operator) - before
    assert logins >= 1, "the refused login must have been asked for"
    assert logins <= 8, logins
