"""The pkcs11 provider end to end: keys inside a real SoftHSM2 token, the real control plane."""

from __future__ import annotations

import asyncio
import base64
import shutil
import sys
import uuid
from pathlib import Path

import pytest
from kubernetes import client

from tests import helpers
from tests.integration import legacy, softhsm, tenant
from tests.integration.conftest import WITHIN_ONE_INTERVAL, OperatorProcess
from vaop import labels
from vaop.crypto import envelope
from vaop.providers.pkcs11 import Pkcs11KeyProvider

pytestmark = pytest.mark.usefixtures("operator")


def _hsm_vault(
    admin: client.ApiClient,
    namespace: str,
    label: str,
    *,
    module: str = softhsm.MODULE,
    vault_writer: client.ApiClient | None = None,
) -> None:
    """PIN Secret, the grant to read it, KeyVault and CustomerKey for ``studio-identity``."""
    core, rbac = client.CoreV1Api(admin), client.RbacAuthorizationV1Api(admin)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="hsm-pin"), string_data={"pin": softhsm.PIN}),
    )
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="read-pin"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[""], resources=["secrets"], resource_names=["hsm-pin"], verbs=["get"]
                )
            ],
        ),
    )
    _grant_pin(admin, namespace)
    block = {
        "module": module,
        "tokenLabel": softhsm.TOKEN,
        "pinSecretRef": {"name": "hsm-pin", "key": "pin"},
    }
    helpers.create(
        vault_writer or admin,
        namespace,
        "KeyVault",
        "hsm",
        {"region": "westeurope", "provider": {"pkcs11": block}},
    )
    tenant.make_key(admin, namespace, "key", vault="hsm", key_name=label)


def _grant_pin(admin: client.ApiClient, namespace: str) -> None:
    """The access grant: studio-identity may read the PIN Secret."""
    client.RbacAuthorizationV1Api(admin).create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="read-pin"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="read-pin"),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name="studio-identity", namespace=namespace)
            ],
        ),
    )


def _label() -> str:
    return f"kek-{uuid.uuid4().hex[:8]}"


def test_wrap_rotate_revoke_recover(admin: client.ApiClient, namespace: str) -> None:
    label = _label()
    softhsm.add_rsa_version(label, 1)
    _hsm_vault(admin, namespace, label)
    tenant.account(admin, namespace, "studio", key="key")
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    kcv = account["status"]["accountKey"]["keyCheckValue"]
    # SoftHSM2 2.6 does RSA-OAEP only with SHA-1: the envelope says so.
    assert account["status"]["accountKey"]["algorithm"] == "RSA-OAEP+A256GCM"
    secret = client.CoreV1Api(admin).read_namespaced_secret("studio-account-key", namespace)
    assert (
        envelope.decode(base64.b64decode(secret.data[labels.ENVELOPE_DATA_KEY])).inner.algorithm == "RSA-OAEP"
    )
    status = tenant.key_status(admin, namespace)
    assert (status["keyType"], status["keySize"]) == ("RSA-HSM", 2048)

    softhsm.add_rsa_version(label, 2, bits=3072)
    account = tenant.wait_wrapped_by(admin, namespace, "studio", keyVersion="2", timeout=WITHIN_ONE_INTERVAL)
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv

    client.RbacAuthorizationV1Api(admin).delete_namespaced_role_binding("read-pin", namespace)
    account = tenant.wait_locked(admin, namespace, "studio", "AccessDenied", timeout=WITHIN_ONE_INTERVAL)
    assert "hsm-pin" in helpers.condition(account, "KeyInaccessible")["message"]  # type: ignore[index]

    _grant_pin(admin, namespace)
    account = tenant.wait_condition(admin, namespace, "studio", "Ready", "True", timeout=WITHIN_ONE_INTERVAL)
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv


def test_destroyable_key_is_refused(admin: client.ApiClient, namespace: str) -> None:
    label = _label()
    softhsm.add_rsa_version(label, 1, destroyable=True)
    _hsm_vault(admin, namespace, label)
    tenant.account(admin, namespace, "studio", key="key")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "False", reason="SoftDeleteDisabled")


def test_ec_key_in_the_token_is_unsupported(admin: client.ApiClient, namespace: str) -> None:
    label = _label()
    softhsm.add_ec_version(label, 1)
    _hsm_vault(admin, namespace, label)
    tenant.account(admin, namespace, "studio", key="key")
    tenant.wait_condition(admin, namespace, "studio", "Ready", "False", reason="KeyUnsupported")


def test_a_module_the_platform_did_not_vet_is_never_loaded(
    admin: client.ApiClient, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    """A KeyVault names a working PKCS#11 module (a copy of SoftHSM2's) at a path the platform did not
    allow: the webhook refuses it; one written past the webhook (made before the rule) and the account
    say so, and the operator's process never maps that file."""
    copy = tmp_path / "libsofthsm2-copy.so"
    shutil.copy(softhsm.MODULE, copy)
    label = _label()
    softhsm.add_rsa_version(label, 1)
    vault = {
        "module": str(copy),
        "tokenLabel": softhsm.TOKEN,
        "pinSecretRef": {"name": "hsm-pin", "key": "pin"},
    }
    with pytest.raises(client.ApiException) as denied:
        helpers.create(
            admin, namespace, "KeyVault", "hsm", {"region": "westeurope", "provider": {"pkcs11": vault}}
        )
    assert f"KeyVault hsm: PKCS#11 module {copy} is not one the platform allows" in denied.value.body
    _hsm_vault(admin, namespace, label, module=str(copy), vault_writer=legacy.past_the_webhook(admin))

    def refused(kind: str, name: str) -> str | None:
        ready = helpers.condition(helpers.get(admin, namespace, kind, name), "Ready") or {}
        return ready["message"] if ready.get("reason") == "ProviderUnavailable" else None

    message = helpers.eventually(lambda: refused("KeyVault", "hsm"))
    assert f"PKCS#11 module {copy} is not one the platform allows (allowed: {softhsm.MODULE})" in message
    helpers.eventually(lambda: refused("CustomerKey", "key"))  # the key on it says so too
    # An account on it is refused at admission, with the same reason.
    with pytest.raises(client.ApiException) as denied:
        tenant.account(admin, namespace, "studio", key="key")
    assert "(ProviderUnavailable)" in denied.value.body
    assert "not one the platform allows" in denied.value.body
    assert operator.popen is not None
    assert str(copy) not in Path(f"/proc/{operator.popen.pid}/maps").read_text()


# Stopped with SIGTERM, which Python handles between calls: a kill in the middle of C_Login's rewrite of
# the token file would leave the token unreadable for every later test.
_NEIGHBOUR = """
import signal, sys, time, pkcs11
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
for attempt in range(100):  # the look-up itself meets the contention this test is about
    try:
        token = pkcs11.lib(sys.argv[1]).get_token(token_label=sys.argv[2])
        break
    except (pkcs11.exceptions.PKCS11Error, RuntimeError):
        time.sleep(0.01)
while True:
    try:
        with token.open(user_pin="00000000"):
            pass
    except pkcs11.exceptions.PKCS11Error:
        pass
    time.sleep(0.005)
"""


async def test_another_process_on_the_token_does_not_make_calls_fail() -> None:
    """SoftHSM2's file store answers GeneralError to slot look-ups while another process logs in
    (here: a neighbour failing a login every 5 ms, which rewrites the token's PIN counter); every
    call the provider makes still succeeds."""
    label = _label()
    softhsm.add_rsa_version(label, 1)
    provider = Pkcs11KeyProvider(
        module=softhsm.MODULE, token_label=softhsm.TOKEN, pin=softhsm.PIN, identity="x"
    )
    key = await provider.resolve(label, None)
    wrapped = await provider.wrap(key, b"k" * 32)
    neighbour = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _NEIGHBOUR, softhsm.MODULE, softhsm.TOKEN
    )
    try:
        for _ in range(200):
            assert (await provider.resolve(label, None)).version == "1"
            opened = await provider.unwrap(label, "1", wrapped.ciphertext, algorithm=wrapped.algorithm)
            assert opened == b"k" * 32
    finally:
        neighbour.terminate()
        await neighbour.wait()
