"""Key versions with an expiry date, on the real apiserver (the kubernetes provider's
``videoanalyzer.io/key-expires-on``) and the Azure Key Vault stand-in: as in Azure Key Vault, an expired
version still opens what it wrapped and wraps nothing new. Accounts are warned before the version that
wraps them expires, stay Active when it does, and move at the next version."""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from typing import Any

import pytest
from kubernetes import client

from tests import helpers
from tests.integration import tenant
from tests.integration.azure_stand_in import AzureKeyVault
from tests.integration.conftest import WITHIN_ONE_INTERVAL
from tests.integration.test_azure_key_vault import studio_on_azure
from vaopdev import cluster

pytestmark = pytest.mark.usefixtures("operator")


def _rfc3339(days: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _vaop_keys(control_plane: cluster.ControlPlane, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "vaop", "keys", *args],
        env={"KUBECONFIG": str(control_plane.admin_kubeconfig)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _expiring(admin: client.ApiClient, namespace: str, name: str, status: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        account = helpers.get(admin, namespace, "VideoAnalyzerAccount", name)
        found = helpers.condition(account, "KeyExpiring")
        return account if found is not None and found["status"] == status else None

    return helpers.eventually(probe, timeout=WITHIN_ONE_INTERVAL)


def _key_reason(admin: client.ApiClient, namespace: str) -> str:
    ready = helpers.condition(helpers.get(admin, namespace, "CustomerKey", "key"), "Ready") or {}
    return str(ready.get("reason", ""))


def _events(admin: client.ApiClient, namespace: str, reason: str) -> list[client.CoreV1Event]:
    found = client.CoreV1Api(admin).list_namespaced_event(namespace, field_selector=f"reason={reason}")
    return list(found.items)


def test_an_expiring_version_warns_an_expired_one_keeps_accounts_active_and_they_move_at_the_next(
    admin: client.ApiClient, namespace: str, keys_namespace: str, control_plane: cluster.ControlPlane
) -> None:
    tenant.studio_on_customer_key(admin, namespace, keys_namespace)
    kcv = helpers.get(admin, namespace, "VideoAnalyzerAccount", "studio")["status"]["accountKey"][
        "keyCheckValue"
    ]
    keys = ["-n", namespace, "--vault", "vault", "--name", "kek", "--version", "1"]

    # Ten days left, inside the 30-day warning: KeyExpiring with the date, an Event, the key's status.
    in_ten_days = _rfc3339(10)
    _vaop_keys(control_plane, "expire", *keys, "--on", in_ten_days)
    account = _expiring(admin, namespace, "studio", "True")
    message = helpers.condition(account, "KeyExpiring")["message"]  # type: ignore[index]
    assert f"expires on {in_ten_days[:10]}" in message and "add a new version" in message
    assert account["status"]["state"] == "Active"
    helpers.eventually(lambda: _events(admin, namespace, "KeyVersionExpiring"))
    key = helpers.eventually(lambda: tenant.key_status(admin, namespace).get("currentVersionExpiresOn"))
    assert key == in_ten_days
    listing = _vaop_keys(control_plane, "list", "-n", namespace).splitlines()
    assert listing[0].split() == ["NAME", "VAULT", "VERSION", "EXPIRES", "READY", "REASON"]
    assert listing[1].split() == ["key", "vault", "1", in_ten_days, "True", "Valid"]

    # Expired: the account stays Active on it (it still opens); the key wraps no new account.
    _vaop_keys(control_plane, "expire", *keys, "--on", _rfc3339(-1))
    helpers.eventually(lambda: _key_reason(admin, namespace) == "KeyExpired")
    account = helpers.get(admin, namespace, "VideoAnalyzerAccount", "studio")
    assert account["status"]["state"] == "Active"
    assert "expired on" in helpers.condition(account, "KeyExpiring")["message"]  # type: ignore[index]
    with pytest.raises(client.ApiException) as refused:
        tenant.account(admin, namespace, "another", key="key")
    assert "(KeyExpired)" in refused.value.body and "Add a new version" in refused.value.body

    # A new version: the account moves to it at the next check, same account key; the warning clears.
    _vaop_keys(
        control_plane, "rotate", "-n", namespace, "--vault", "vault", "--name", "kek", "--size", "2048"
    )
    account = tenant.wait_wrapped_by(admin, namespace, "studio", keyVersion="2", timeout=WITHIN_ONE_INTERVAL)
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv
    account = _expiring(admin, namespace, "studio", "False")
    assert helpers.condition(account, "KeyExpiring")["reason"] == "KeyVersionValid"  # type: ignore[index]


def test_an_expired_azure_version_still_opens_and_accounts_move_to_the_next(
    admin: client.ApiClient, namespace: str, azure_vault: AzureKeyVault
) -> None:
    """Azure Key Vault's semantics: past its expiry date a version unwraps but never wraps."""
    key, kcv = studio_on_azure(admin, namespace, azure_vault)
    first = azure_vault.keys[key].versions[0].version
    azure_vault.update(key, first, expires=int(time.time()) - 60)
    account = _expiring(admin, namespace, "studio", "True")
    assert account["status"]["state"] == "Active"
    assert "expired on" in helpers.condition(account, "KeyExpiring")["message"]  # type: ignore[index]
    assert helpers.condition(account, "KeyInaccessible")["status"] == "False"  # type: ignore[index]

    second = azure_vault.add_version(key, size=3072)
    account = tenant.wait_wrapped_by(
        admin, namespace, "studio", keyVersion=second, timeout=WITHIN_ONE_INTERVAL
    )
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv
