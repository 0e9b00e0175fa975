"""The account store that every replica keeps from the account watch (admission, data API and the
leader's reconciliations read it)."""

from __future__ import annotations

import json
from typing import Any

from vaop import accountstore


def _account(name: str, *, key_ref: str | None = None, state: str = "", version: str = "1") -> dict[str, Any]:
    encryption: dict[str, Any] = {"type": "CustomerKey", "keyRef": {"name": key_ref}} if key_ref else {}
    return {
        "metadata": {"name": name, "namespace": "tenant-a", "uid": f"uid-{name}", "resourceVersion": version},
        "spec": {"region": "westeurope", "encryption": encryption or {"type": "SystemKey"}},
        "status": {
            "state": state,
            "conditions": [{"type": "Ready", "status": "False", "reason": "KeyNotFound"}],
        },
    }


def test_an_account_is_kept_from_its_listing_and_updates_until_it_is_deleted() -> None:
    store = accountstore.AccountStore()
    store.seen(None, "tenant-a", "studio", _account("studio", state="Provisioning"))
    store.seen("MODIFIED", "tenant-a", "studio", _account("studio", state="KeyInaccessible", version="7"))

    record = store[("tenant-a", "studio")]
    assert (record.uid, record.state, record.reason, record.resource_version) == (
        "uid-studio",
        "KeyInaccessible",
        "KeyNotFound",
        "7",
    )
    assert list(store) == [("tenant-a", "studio")]

    store.seen("DELETED", "tenant-a", "studio", _account("studio"))
    assert ("tenant-a", "studio") not in store and len(store) == 0


def test_the_record_is_a_copy_that_a_later_change_of_the_body_does_not_reach() -> None:
    store = accountstore.AccountStore()
    body = _account("studio", key_ref="tenant-key")
    store.seen("ADDED", "tenant-a", "studio", body)
    body["spec"]["encryption"]["keyRef"]["name"] = "other"
    body["status"]["state"] = "Active"

    record = store[("tenant-a", "studio")]
    assert record.spec["encryption"]["keyRef"]["name"] == "tenant-key" and record.status["state"] == ""


def test_accounts_on_customer_keys_follow_the_spec_and_leave_on_deletion() -> None:
    store = accountstore.AccountStore()
    store.seen("ADDED", "tenant-a", "studio", _account("studio", key_ref="tenant-key"))
    store.seen("ADDED", "tenant-a", "archive", _account("archive", key_ref="tenant-key"))
    store.seen("ADDED", "tenant-a", "plain", _account("plain"))
    assert store.on_customer_keys("tenant-a") == ["archive", "studio"]
    assert store.on_customer_keys("tenant-b") == []

    store.seen("MODIFIED", "tenant-a", "studio", _account("studio"))  # switched to SystemKey
    store.seen("DELETED", "tenant-a", "archive", _account("archive", key_ref="tenant-key"))
    assert store.on_customer_keys("tenant-a") == []

    store.seen("MODIFIED", "tenant-a", "plain", _account("plain", key_ref="tenant-key"))  # switched to a key
    assert store.on_customer_keys("tenant-a") == ["plain"]


def test_records_of_many_accounts_share_the_strings_they_have_in_common() -> None:
    # As the watch delivers them: each body parsed on its own, with its own copy of every string.
    bodies = {
        name: json.loads(json.dumps(_account(name, key_ref="tenant-key"))) for name in ("studio", "archive")
    }
    assert (
        bodies["studio"]["status"]["conditions"][0]["reason"]
        is not bodies["archive"]["status"]["conditions"][0]["reason"]
    )
    store = accountstore.AccountStore()
    for name, body in bodies.items():
        store.seen("ADDED", "tenant-a", name, body)

    studio, archive = store[("tenant-a", "studio")], store[("tenant-a", "archive")]
    assert studio.status == archive.status and studio.status is not archive.status
    ready = studio.status["conditions"][0], archive.status["conditions"][0]
    assert ready[0]["reason"] is ready[1]["reason"]
    assert all(a is b for a, b in zip(ready[0], ready[1], strict=True))  # the keys
    assert studio.spec["encryption"]["keyRef"]["name"] is archive.spec["encryption"]["keyRef"]["name"]


def test_subscribers_are_told_each_event_after_the_store_holds_it() -> None:
    store = accountstore.AccountStore()
    told: list[tuple[str, str, str | None, bool]] = []

    def subscriber(namespace: str, name: str, record: Any) -> None:
        held = store.get((namespace, name))
        told.append((namespace, name, record.state if record else None, held is record))

    store.subscribe(subscriber)
    store.seen(None, "tenant-a", "studio", _account("studio", state="Active"))
    store.seen("MODIFIED", "tenant-a", "studio", _account("studio", state="KeyInaccessible", version="2"))
    store.seen("DELETED", "tenant-a", "studio", _account("studio", version="3"))
    assert told == [
        ("tenant-a", "studio", "Active", True),
        ("tenant-a", "studio", "KeyInaccessible", True),
        ("tenant-a", "studio", None, True),  # deleted: gone from the store too
    ]
