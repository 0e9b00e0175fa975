"""Vault addresses the platform allows, on the real apiserver and a real OpenBao: a tenant pointing its
KeyVault at the apiserver, the metadata address or another namespace's Service is refused when it
writes it, and again when the operator would connect; a KeyVault is probed without credentials, so
one whose vault does not answer says so before any account meets it, and says when it answers again.

The fast tier runs the operator in the local mode, where its vaults listen on loopback: loopback is
allowed there (and refused in a cluster; tests/unit/test_vault_addresses.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from kubernetes import client

from tests import helpers
from tests.integration import legacy, tenant
from tests.integration.conftest import WITHIN_ONE_INTERVAL
from vaopdev import cluster, openbao

pytestmark = pytest.mark.usefixtures("operator")


def _openbao_vault(address: str, role: str = "tenant") -> dict[str, Any]:
    return {"region": "westeurope", "provider": {"openbao": {"address": address, "role": role}}}


def _refused_message(admin: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> str:
    with pytest.raises(client.ApiException) as refused:
        helpers.create(admin, namespace, "KeyVault", name, spec)
    assert refused.value.status == 403, refused.value.body
    message = str(json.loads(refused.value.body)["message"])
    assert f"KeyVault {name}:" in message
    return message


def _service_range(admin: client.ApiClient) -> str:
    found = client.NetworkingV1Api(admin).list_service_cidr()
    return str(found.items[0].spec.cidrs[0])


def test_a_tenant_cannot_point_a_key_vault_into_the_cluster_or_at_metadata(
    admin: client.ApiClient, namespace: str
) -> None:
    apiserver_service = (
        client.CoreV1Api(admin).read_namespaced_service("kubernetes", "default").spec.cluster_ip
    )
    service_range = _service_range(admin)

    message = _refused_message(
        admin, namespace, "apiserver", _openbao_vault(f"https://{apiserver_service}:443")
    )
    assert f"https://{apiserver_service}:443: in the cluster's range {service_range}" in message
    message = _refused_message(
        admin, namespace, "apiserver-name", _openbao_vault("https://kubernetes.default.svc")
    )
    assert "kubernetes.default.svc is a name inside the cluster" in message
    message = _refused_message(admin, namespace, "metadata", _openbao_vault("http://169.254.169.254"))
    assert "a link-local or metadata address" in message
    message = _refused_message(
        admin, namespace, "neighbour", _openbao_vault("http://openbao.other-tenant.svc.cluster.local:8200")
    )
    assert "a name inside the cluster" in message
    azure = {
        "vaultURL": "https://contoso.vault.azure.net",
        "authorityHost": "https://169.254.169.254",
    }
    message = _refused_message(
        admin, namespace, "entra", {"region": "westeurope", "provider": {"azureKeyVault": azure}}
    )
    assert "spec.provider.azureKeyVault.authorityHost" in message
    # Each message says what the platform allows and where to change it.
    assert service_range in message and "chart value vaultAddresses.allowed" in message
    assert (
        helpers.custom(admin).list_namespaced_custom_object(
            "videoanalyzer.io", "v1alpha1", namespace, "keyvaults"
        )["items"]
        == []
    )


def test_a_refused_address_that_got_in_is_refused_again_when_used(
    admin: client.ApiClient, namespace: str
) -> None:
    """A KeyVault written past the webhook (made before the policy, or while the webhook was off; here
    written by legacy.past_the_webhook) is
    never connected to: the KeyVault says why, the webhook refuses accounts on its keys, and an
    account that got in too stops with VaultAddressRefused."""
    past_the_webhook = legacy.past_the_webhook(admin)
    helpers.create(past_the_webhook, namespace, "KeyVault", "bao", _openbao_vault("http://169.254.169.254"))
    tenant.make_key(admin, namespace, "key", vault="bao", key_name="kek")
    vault = _wait_vault_ready(admin, namespace, "bao", "False", reason="VaultAddressRefused")
    assert "169.254.169.254" in helpers.condition(vault, "Ready")["message"]  # type: ignore[index]
    helpers.eventually(lambda: _key_refused(admin, namespace))
    with pytest.raises(client.ApiException) as refused:  # the key is known unusable: no account on it
        tenant.account(admin, namespace, "studio", key="key")
    assert "(VaultAddressRefused)" in str(refused.value.body)
    tenant.account(past_the_webhook, namespace, "studio", key="key")
    # A new account: no key was ever made, so nothing to lock; it stops, saying why.
    account = tenant.wait_condition(
        admin, namespace, "studio", "Ready", "False", reason="VaultAddressRefused"
    )
    assert account["status"]["state"] == "Error"
    assert "link-local or metadata" in helpers.condition(account, "Stalled")["message"]  # type: ignore[index]


def _key_refused(admin: client.ApiClient, namespace: str) -> bool:
    ready = helpers.condition(helpers.get(admin, namespace, "CustomerKey", "key"), "Ready")
    return ready is not None and ready["reason"] == "VaultAddressRefused"


def _wait_vault_ready(
    admin: client.ApiClient, namespace: str, name: str, status: str, *, reason: str, timeout: float = 30
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        vault = helpers.get(admin, namespace, "KeyVault", name)
        ready = helpers.condition(vault, "Ready")
        return vault if ready and (ready["status"], ready["reason"]) == (status, reason) else None

    return helpers.eventually(probe, timeout=timeout)


class _Health(BaseHTTPRequestHandler):
    """What an OpenBao's sys/health answers once it is up, unsealed and active."""

    def do_GET(self) -> None:
        body = json.dumps({"initialized": True, "sealed": False, "standby": False}).encode()
        self.send_response(200 if self.path.startswith("/v1/sys/health") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def later_vault() -> Iterator[tuple[int, threading.Event]]:
    """A port where nothing answers until the test sets the event."""
    port, start = cluster.free_port(), threading.Event()
    servers: list[HTTPServer] = []

    def serve() -> None:
        if start.wait(timeout=120):
            servers.append(HTTPServer(("127.0.0.1", port), _Health))
            servers[0].serve_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port, start
    start.set()
    helpers.eventually(lambda: servers or None)
    servers[0].shutdown()


def test_a_key_vault_is_probed_without_credentials(
    admin: client.ApiClient,
    namespace: str,
    bao_server: openbao.OpenBao,
    later_vault: tuple[int, threading.Event],
) -> None:
    """Before any account meets it: the real OpenBao answers (Ready, Valid); an address where nothing
    answers is VaultUnreachable and Reconciling (not Stalled), and Ready once it answers, with no
    restart; the apiserver, answering at an address the local mode allows, is not taken for a vault."""
    helpers.create(admin, namespace, "KeyVault", "bao", _openbao_vault(bao_server.address))
    vault = _wait_vault_ready(admin, namespace, "bao", "True", reason="Valid")
    assert "answers (reached without credentials)" in helpers.condition(vault, "Ready")["message"]  # type: ignore[index]

    port, start = later_vault
    helpers.create(admin, namespace, "KeyVault", "later", _openbao_vault(f"http://127.0.0.1:{port}"))
    vault = _wait_vault_ready(admin, namespace, "later", "False", reason="VaultUnreachable")
    assert "did not answer" in helpers.condition(vault, "Ready")["message"]  # type: ignore[index]
    assert helpers.condition(vault, "Reconciling")["status"] == "True"  # type: ignore[index]
    assert helpers.condition(vault, "Stalled") is None
    start.set()
    vault = _wait_vault_ready(admin, namespace, "later", "True", reason="Valid", timeout=WITHIN_ONE_INTERVAL)
    assert helpers.condition(vault, "Reconciling") is None

    apiserver = admin.configuration.host  # https://127.0.0.1:<port>: something, but not OpenBao
    helpers.create(admin, namespace, "KeyVault", "apiserver", _openbao_vault(apiserver))
    vault = _wait_vault_ready(admin, namespace, "apiserver", "False", reason="VaultUnreachable")
    assert "certificate that is not trusted" in helpers.condition(vault, "Ready")["message"]  # type: ignore[index]
