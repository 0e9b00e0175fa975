"""The listers read what the replica's watches hold as models: a reader never parses an index's dict."""

from __future__ import annotations

from vaop import accountstore, models
from vaop.listers import Listers


def _listers() -> Listers:
    accounts = accountstore.AccountStore()
    accounts.seen(
        None,
        "t",
        "studio",
        {
            "metadata": {"uid": "u1", "resourceVersion": "7", "generation": 2},
            "spec": {"region": "westeurope", "encryption": {"type": "CustomerKey", "keyRef": {"name": "k"}}},
            "status": {"state": "Active"},
        },
    )
    customer_keys = {
        ("t", "k"): [
            {
                "spec": {"vaultRef": {"name": "v"}, "keyName": "tenant-key", "keyVersion": ""},
                "status": {"observedGeneration": 1},
                "generation": 3,
            }
        ]
    }
    key_vaults = {"t": [("v", {"region": "westeurope", "provider": {"kubernetes": {"namespace": "keys"}}})]}
    return Listers(accounts, customer_keys, key_vaults)


def test_each_kind_is_read_as_its_model() -> None:
    listers = _listers()
    account = listers.account("t", "studio")
    assert account is not None and (account.uid, account.state, account.generation) == ("u1", "Active", 2)
    assert listers.accounts() == [("t", "studio")]

    key = listers.customer_key("t", "k")
    assert key == models.CustomerKeyRecord(
        models.CustomerKeySpec.parse({"vaultRef": {"name": "v"}, "keyName": "tenant-key", "keyVersion": ""}),
        {"observedGeneration": 1},
        3,
    )
    assert key.spec.pinned_version is None  # an empty keyVersion tracks the latest
    assert listers.customer_keys() == [("t", "k")]

    vaults = listers.key_vaults("t")
    assert list(vaults) == ["v"]
    assert vaults["v"].region == "westeurope"
    assert vaults["v"].provider.kubernetes is not None and vaults["v"].provider.kubernetes.namespace == "keys"


def test_what_is_not_there_is_none_or_empty() -> None:
    listers = _listers()
    assert listers.account("t", "other") is None
    assert listers.customer_key("t", "other") is None
    assert listers.customer_key("other", "k") is None
    assert listers.key_vaults("other") == {}
