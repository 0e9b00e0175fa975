"""Moving an account to another key never locks it: from the system key to a customer key and back,
to another key, another vault, another identity. The account key is opened as the identity that
wrapped it (remembered with the wrap), whatever the spec names now; a move whose target or source
cannot be used keeps the account's state, says why in Ready, and completes once both can be used."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from tests import helpers
from tests.integration import tenant
from tests.integration.conftest import WITHIN_ONE_INTERVAL
from vaop import providerpool

pytestmark = pytest.mark.usefixtures("operator")


@dataclass(frozen=True)
class Place:
    """Where an account key may be wrapped: the system key, or a CustomerKey as an identity."""

    key: str | None = None  # CustomerKey; None: the system key
    identity: str | None = None  # spec.encryption.identity; None: the spec names none

    def encryption(self) -> dict[str, Any]:
        if self.key is None:
            return {"type": "SystemKey", "keyRef": None, "identity": None}
        identity = {"serviceAccountName": self.identity} if self.identity else None
        return {"type": "CustomerKey", "keyRef": {"name": self.key}, "identity": identity}


SYSTEM = Place()
KEY_A = Place("key-a", "alice")  # kek-a in vault-1
KEY_B = Place("key-b", "alice")  # kek-b in vault-1: another key, same vault
KEY_C = Place("key-c", "alice")  # kek-c in vault-2: another vault
KEY_A_AS_BOB = Place("key-a", "bob")  # the same key, another identity
WRAPPED = {"key-a": ("vault-1", "kek-a"), "key-b": ("vault-1", "kek-b"), "key-c": ("vault-2", "kek-c")}


Break = tuple[str, str, str]  # ("revoke", identity, vault) or ("disable", key name, "")
REASONS = {"revoke": "AccessDenied", "disable": "KeyDisabled"}


@dataclass
class Keys:
    admin: client.ApiClient
    namespace: str
    keys_namespaces: dict[str, str]  # vault -> namespace of its key Secrets

    def grant(self, identity: str, vault: str) -> None:
        tenant.grant(
            self.admin,
            keys_namespace=self.keys_namespaces[vault],
            identity_namespace=self.namespace,
            identity=identity,
        )

    def breaks(self, how: Break, *, broken: bool) -> None:
        """Make a key unusable to an account (its identity's grant revoked, its only version
        disabled), or usable again."""
        verb, what, vault = how
        if verb == "revoke":
            if broken:
                client.RbacAuthorizationV1Api(self.admin).delete_namespaced_role_binding(
                    f"read-keys-{what}", self.keys_namespaces[vault]
                )
            else:
                self.grant(what, vault)
            return
        vault_of = {key_name: v for v, key_name in WRAPPED.values()}
        client.CoreV1Api(self.admin).patch_namespaced_secret(
            f"{what}-v1",
            self.keys_namespaces[vault_of[what]],
            {"metadata": {"annotations": {"videoanalyzer.io/key-enabled": "false" if broken else "true"}}},
        )


@pytest.fixture
def keys(admin: client.ApiClient, namespace: str, keys_namespace: str, other_keys_namespace: str) -> Keys:
    found = Keys(admin, namespace, {"vault-1": keys_namespace, "vault-2": other_keys_namespace})
    for vault, keys_ns in found.keys_namespaces.items():
        tenant.make_vault(admin, namespace, vault, keys_namespace=keys_ns)
    for key, (vault, key_name) in WRAPPED.items():
        tenant.put_key_version(admin, found.keys_namespaces[vault], key_name, 1, tenant.rsa_pem(2048))
        tenant.make_key(admin, namespace, key, vault=vault, key_name=key_name)
    for identity in ("alice", "bob"):
        client.CoreV1Api(admin).create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=identity))
        )
    for identity, vault in (("alice", "vault-1"), ("alice", "vault-2"), ("bob", "vault-1")):
        found.grant(identity, vault)
    return found


def _move(admin: client.ApiClient, namespace: str, to: Place) -> None:
    helpers.custom(admin).patch_namespaced_custom_object(
        "videoanalyzer.io",
        "v1alpha1",
        namespace,
        "videoanalyzeraccounts",
        "studio",
        {"spec": {"encryption": to.encryption()}},
    )


def _wrapped_at(admin: client.ApiClient, namespace: str, place: Place) -> dict[str, Any]:
    if place.key is None:
        return tenant.wait_wrapped_by(
            admin, namespace, "studio", type="SystemKey", timeout=WITHIN_ONE_INTERVAL + 10
        )
    vault, key_name = WRAPPED[place.key]
    identity = place.identity or "studio-identity"
    return tenant.wait_wrapped_by(
        admin,
        namespace,
        "studio",
        keyVault=vault,
        keyName=key_name,
        identity=identity,
        timeout=WITHIN_ONE_INTERVAL + 10,
    )


def _waits(admin: client.ApiClient, namespace: str, reason: str, says: str) -> dict[str, Any]:
    """Ready=False for ``reason`` saying ``says``; the account Active and never locked meanwhile."""

    def probe() -> dict[str, Any] | None:
        account = helpers.get(admin, namespace, "VideoAnalyzerAccount", "studio")
        ready = helpers.condition(account, "Ready") or {}
        assert account["status"]["state"] == "Active", account["status"]
        assert (helpers.condition(account, "KeyInaccessible") or {}).get("status") != "True"
        found = ready.get("status") == "False" and ready.get("reason") == reason and says in ready["message"]
        return account if found else None

    return helpers.eventually(probe, timeout=WITHIN_ONE_INTERVAL + 10)


@pytest.mark.parametrize(
    ("source", "target", "break_source", "break_target"),
    [
        (SYSTEM, KEY_A, None, ("revoke", "alice", "vault-1")),
        (KEY_A, SYSTEM, None, None),  # the spec no longer names the identity that wrapped it
        (KEY_A, KEY_B, ("disable", "kek-a", ""), ("disable", "kek-b", "")),
        (KEY_A, KEY_C, ("revoke", "alice", "vault-1"), ("revoke", "alice", "vault-2")),
        (KEY_A, KEY_A_AS_BOB, ("revoke", "alice", "vault-1"), ("revoke", "bob", "vault-1")),
    ],
    ids=["system-to-customer", "customer-to-system", "another-key", "another-vault", "another-identity"],
)
def test_a_move_never_locks_and_completes_once_both_keys_can_be_used(  # noqa: PLR0917 (a table's columns)
    admin: client.ApiClient,
    namespace: str,
    keys: Keys,
    source: Place,
    target: Place,
    break_source: Break | None,
    break_target: Break | None,
) -> None:
    spec = {"region": "westeurope", "encryption": source.encryption()}
    helpers.create(admin, namespace, "VideoAnalyzerAccount", "studio", spec)
    kcv = tenant.wait_condition(admin, namespace, "studio", "Ready", "True")["status"]["accountKey"][
        "keyCheckValue"
    ]
    _wrapped_at(admin, namespace, source)
    if break_target is not None:
        keys.breaks(break_target, broken=True)
    _move(admin, namespace, target)
    if break_target is not None:
        # The target cannot wrap: the account keeps its wrap, and says so.
        _waits(admin, namespace, REASONS[break_target[0]], "stays wrapped by")
        if break_source is not None:
            # Now the source cannot open it either (after the move: the account is checked on its
            # target now, so nothing locks it); the target usable again, the move waits on the source.
            keys.breaks(break_source, broken=True)
            # A vault's answers are shared for a few seconds (providerpool.ProviderPool): let those from
            # before the source broke age out, or the move may still open the key with them.
            time.sleep(providerpool.ProviderPool().max_age + 1)
            keys.breaks(break_target, broken=False)
            waiting = _waits(admin, namespace, REASONS[break_source[0]], "cannot move from")
            assert "the move is tried again" in helpers.condition(waiting, "Ready")["message"]  # type: ignore[index]
            keys.breaks(break_source, broken=False)
        else:
            keys.breaks(break_target, broken=False)
    account = _wrapped_at(admin, namespace, target)
    tenant.wait_condition(admin, namespace, "studio", "Ready", "True")
    assert account["status"]["accountKey"]["keyCheckValue"] == kcv
    if target.key is None:
        # Opened as the identity that wrapped it: the default identity was never needed, nor made.
        names = {
            a.metadata.name for a in client.CoreV1Api(admin).list_namespaced_service_account(namespace).items
        }
        assert "studio-identity" not in names
