"""What reconciliations read instead of the API: the watch cache, the provider pool, and the one
entry per account; and a rotation told once per key."""

from __future__ import annotations

import asyncio
import contextlib
import json
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from kubernetes_asyncio import client
from prometheus_client import REGISTRY

from tests import helpers
from vaop import events, kubeclient, metrics, pki, providerpool
from vaop.dataapi import auth
from vaop.providers import base, openbao
from vaop.reconcilers import ledger, monitor
from vaop.runtime import watchcache


def _secret(name: str, version: str) -> Any:
    return SimpleNamespace(metadata=SimpleNamespace(namespace="t", name=name, resource_version=version))


def test_the_watch_cache_keeps_the_newest_of_the_watch_and_the_operators_own_writes() -> None:
    cache = watchcache.WatchCache(lambda **_: None, label_selector="x")  # type: ignore[arg-type]
    cache.put(_secret("a", "10"))
    cache.put(_secret("a", "9"))  # an older state, delivered late by the watch
    assert _version(cache, "a") == "10"
    cache.put(_secret("a", "11"))
    assert _version(cache, "a") == "11"
    assert cache.get("t", "b") is None


def test_the_watch_cache_keeps_what_its_readers_use_of_a_secret_and_drops_the_rest() -> None:
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(
            name="studio-account-key",
            namespace="t",
            uid="u-1",
            resource_version="12",
            labels={"videoanalyzer.io/account": "studio"},
            annotations={"videoanalyzer.io/key-check-value": "abc123"},
            managed_fields=[client.V1ManagedFieldsEntry(manager="vaop", operation="Update")],
        ),
        type="videoanalyzer.io/account-key",
        data={"envelope": "ZW52ZWxvcGU="},
    )
    cache = watchcache.WatchCache(lambda **_: None, label_selector="x")  # type: ignore[arg-type]
    cache.put(secret)

    kept = cache.get("t", "studio-account-key")
    assert kept is not None
    assert (kept.metadata.name, kept.metadata.uid, kept.metadata.resource_version) == (
        "studio-account-key",
        "u-1",
        "12",
    )
    assert kept.metadata.labels == {"videoanalyzer.io/account": "studio"}
    assert kept.metadata.annotations == {"videoanalyzer.io/key-check-value": "abc123"}
    assert (kept.type, kept.data) == ("videoanalyzer.io/account-key", {"envelope": "ZW52ZWxvcGU="})
    assert not hasattr(kept.metadata, "managed_fields")


def _version(cache: watchcache.WatchCache, name: str) -> str:
    found = cache.get("t", name)
    assert found is not None
    return str(found.metadata.resource_version)


class _SecretsApi:
    """``list_secret_for_all_namespaces`` as the apiserver answers it: pages, then watch streams
    that each end after their timeout."""

    def __init__(self, watches: list[list[dict[str, Any]]]) -> None:
        self.requests: list[dict[str, Any]] = []
        self._watches = watches

    async def list_secrets(self, **params: Any) -> Any:
        """:rtype: V1SecretList"""
        self.requests.append(params)
        if params.get("watch"):
            if not self._watches:
                raise _Stop
            return _Stream(self._watches.pop(0))
        first = params.get("_continue") is None
        items = [_secret("a", "5")] if first else [_secret("b", "6")]
        return SimpleNamespace(
            items=items, metadata=SimpleNamespace(_continue="p2" if first else None, resource_version="7")
        )


class _Stop(Exception):
    pass


class _Stream:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self._lines = [json.dumps(e).encode() + b"\n" for e in events] + [b""]
        self.content = self

    async def readline(self) -> bytes:
        return self._lines.pop(0)

    def close(self) -> None:
        pass

    def release(self) -> None:
        pass


def _event(kind: str, name: str, version: str) -> dict[str, Any]:
    return {
        "type": kind,
        "object": {"metadata": {"namespace": "t", "name": name, "resourceVersion": version}},
    }


async def test_the_watch_cache_lists_in_pages_once_and_each_new_watch_goes_on_from_the_last_version() -> None:
    api = _SecretsApi(
        [
            [_event("MODIFIED", "a", "8"), _event("BOOKMARK", "", "12")],  # ends at its timeout
            [_event("DELETED", "b", "13")],
        ]
    )
    seen: list[tuple[str, str]] = []
    cache = watchcache.WatchCache(
        api.list_secrets,
        label_selector="x",
        on_event=lambda kind, obj: seen.append((kind, obj.metadata.name)),
    )
    with contextlib.suppress(_Stop):
        await watchcache.list_then_watch(api.list_secrets, cache, label_selector="x")

    lists = [r for r in api.requests if not r.get("watch")]
    watches = [r for r in api.requests if r.get("watch")]
    assert [r.get("_continue") for r in lists] == [None, "p2"]  # one listing, in two pages
    assert [w["resource_version"] for w in watches] == ["7", "12", "13"]  # no relist between watches
    assert all(w["allow_watch_bookmarks"] for w in watches)
    assert seen == [("MODIFIED", "a"), ("DELETED", "b")]
    assert _version(cache, "a") == "8" and cache.get("t", "b") is None


class _Provider:
    """Stands for a provider: the pool only keeps and closes them."""

    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def _provider() -> Any:
    return _Provider()


async def test_the_pool_shares_a_provider_for_a_few_seconds_only() -> None:
    pool = providerpool.ProviderPool(max_age=0.05)
    key: providerpool.PoolKey = ("t", "vault", kubeclient.ServiceAccountRef("t", "id"), "{}")
    first = _provider()
    pool.put(key, first)
    assert pool.get(key) is first
    await asyncio.sleep(0.06)
    assert pool.get(key) is None  # too old: the next session asks the vault again


async def test_a_problem_or_a_fresh_answer_replaces_what_the_pool_holds() -> None:
    pool = providerpool.ProviderPool()
    key: providerpool.PoolKey = ("t", "vault", kubeclient.ServiceAccountRef("t", "id"), "{}")
    old, fresh = _provider(), _provider()
    pool.put(key, old)
    pool.put(key, fresh)  # a check's newer answer
    assert id(pool.get(key)) == id(fresh)
    pool.evict(key)  # a vault that did not answer
    assert pool.get(key) is None
    await asyncio.sleep(0)
    assert not old.closed  # still held by the session that put it: its calls may be running
    pool.release(old)
    await asyncio.sleep(0)
    assert old.closed  # closed once no session holds it
    await pool.close()
    assert fresh.closed


async def test_a_provider_out_of_the_pool_closes_with_the_last_session_holding_it() -> None:
    pool = providerpool.ProviderPool()
    key: providerpool.PoolKey = ("t", "vault", kubeclient.ServiceAccountRef("t", "id"), "{}")
    provider = _provider()
    pool.put(key, provider)  # a check connects
    assert id(pool.get(key)) == id(provider)  # and a reconciliation shares it
    pool.put(key, _provider())  # the next check replaces it
    pool.release(provider)  # the check is done
    await asyncio.sleep(0)
    assert not provider.closed  # the reconciliation still uses it
    pool.release(provider)
    await asyncio.sleep(0)
    assert provider.closed  # at once: providers alive follow the sessions, not the check rate
    unused = _provider()
    pool.put(("t", "other", kubeclient.ServiceAccountRef("t", "id"), "{}"), unused)
    pool.release(unused)
    pool.evict(("t", "other", kubeclient.ServiceAccountRef("t", "id"), "{}"))
    await asyncio.sleep(0)
    assert unused.closed  # out of the pool and held by no one


def test_one_record_per_account_feeds_the_monitor_and_the_state_gauge() -> None:
    book = ledger.Ledger()
    watcher = monitor.KeyMonitor(
        check=lambda _: None,  # type: ignore[arg-type,return-value]
        enqueue=lambda _: None,
        interval=1,
        grace=10,
        ledger=book,
    )
    pair = monitor.Pair("t", "id", "key", "westeurope")
    view = monitor.AccountView(pair, False, "1", "Active", "Ready", False)
    watcher.observed(("t", "a"), view)
    book[("t", "a")].state = "Active"
    book[("t", "b")].state = "KeyInaccessible"
    assert book[("t", "a")].view is view
    assert watcher.pairs() == {pair}
    metrics.count_states(book.states)
    assert REGISTRY.get_sample_value("vaop_accounts", {"state": "Active"}) == 1.0
    watcher.observed(("t", "a"), None)
    book.forget(("t", "a"))
    assert watcher.pairs() == set()
    assert REGISTRY.get_sample_value("vaop_accounts", {"state": "Active"}) == 0.0


def test_a_written_status_is_read_until_the_watch_delivers_it_then_dropped() -> None:
    entry = ledger.Entry()
    assert entry.latest_status({"state": "Provisioning"}, "5") == {"state": "Provisioning"}
    entry.wrote({"state": "Active"}, "7")
    # The watch still has version 5: a run now must see what the operator wrote, not redo it.
    assert entry.latest_status({"state": "Provisioning"}, "5") == {"state": "Active"}
    assert entry.written_status is not None
    entry.watched("7")  # the watch caught up: its copy is the status, the entry holds none
    assert entry.written_status is None
    assert entry.latest_status({"state": "Active", "x": 1}, "7") == {"state": "Active", "x": 1}
    entry.wrote({"state": "KeyInaccessible"}, "9")
    assert entry.latest_status({"state": "Active"}, "10") == {"state": "Active"}  # someone wrote after
    assert entry.written_status is None
    entry.watched("12")  # the watch delivered a write before the write's response was handled
    entry.wrote({"state": "Active", "y": 2}, "12")
    assert entry.written_status is None
    assert entry.latest_status({"state": "Active", "y": 2}, "12") == {"state": "Active", "y": 2}


async def test_a_rotation_is_one_event_per_key_naming_the_accounts(monkeypatch: Any) -> None:
    posted: list[tuple[Any, str, str]] = []

    async def post(api: Any, involved: Any, *, reason: str, message: str, warning: bool = False) -> None:
        posted.append((involved, reason, message))

    monkeypatch.setattr(events, "post", post)
    summary = events.RotationSummary(None, window=0.01)
    for i in range(12):
        summary.add("t", "key", "2", f"acct-{i:02d}")
    await asyncio.sleep(0.05)
    assert len(posted) == 1
    involved, reason, message = posted[0]
    assert (involved.kind, involved.name, involved.namespace, reason) == (
        "CustomerKey",
        "key",
        "t",
        "AccountKeysRewrapped",
    )
    assert message.startswith("Account keys of 12 account(s) re-wrapped to version 2: acct-00, acct-01")
    assert message.endswith("and 2 more.")


def test_a_bounded_cache_drops_the_least_recently_used_and_reports_its_size() -> None:
    cache: base.Bounded[str, int] = base.Bounded("test_bounded", limit=3)
    for i, key in enumerate("abc"):
        cache.put(key, i)
    assert cache.get("a") == 0  # used: now the most recent
    cache.put("d", 3)
    assert cache.get("b") is None and [cache.get(k) for k in "acd"] == [0, 2, 3]
    assert REGISTRY.get_sample_value("vaop_cache_entries", {"cache": "test_bounded"}) == 3


def test_providers_share_one_tls_context_per_ca_bundle() -> None:
    """A provider is made anew for every check of every tenant; the CA bundle its KeyVault names is
    parsed once, not on each, and the contexts held are a bounded, measured cache."""
    first, second = (pki.make_ca(name).cert_pem.decode() for name in ("vault-a", "vault-b"))
    made = [
        openbao.OpenBaoKeyProvider(
            address="https://bao.test:8200",
            transit_mount="transit",
            auth_mount="kubernetes",
            role="tenant",
            service_account_token="jwt",
            identity="ServiceAccount t/a",
            addresses=None,
            ca_bundle=bundle,
        )._ssl
        for bundle in (first, first, second)
    ]
    assert made[0] is made[1] and made[0] is not made[2]
    assert base.tls_context(first) is made[0]
    assert base.tls_context(None) is base.tls_context(None)  # the system's CAs, also once
    held = REGISTRY.get_sample_value("vaop_cache_entries", {"cache": "tls-contexts"})
    assert held is not None and 3 <= held <= 256


async def test_openbao_logs_in_once_per_identity_however_often_its_token_is_renewed(monkeypatch: Any) -> None:
    """The ServiceAccount token is renewed every few minutes; over a week that is thousands of tokens
    per identity. They share one vault token per lease, and the cache holds one entry per identity."""
    logins: list[str] = []

    async def request(self: openbao.OpenBaoKeyProvider, method: str, path: str, body: Any, **_: Any) -> Any:
        logins.append(body["jwt"])
        return {"auth": {"client_token": f"s.{len(logins)}", "lease_duration": 3600}}

    monkeypatch.setattr(openbao.OpenBaoKeyProvider, "_request", request)
    before = len(openbao._tokens)
    for renewal in range(200):
        for identity in ("ServiceAccount t/a", "ServiceAccount t/b"):
            provider = openbao.OpenBaoKeyProvider(
                address="https://bao.test:8200",
                transit_mount="transit",
                auth_mount="kubernetes",
                role="tenant",
                service_account_token=f"jwt-{identity}-{renewal}",
                identity=identity,
                addresses=None,
            )
            assert await provider._login() in ("s.1", "s.2")
    assert len(logins) == 2
    assert len(openbao._tokens) == before + 2


async def test_identities_forget_what_they_held_for_a_service_account_no_longer_used(
    monkeypatch: Any,
) -> None:
    """Tenants come and go: a ServiceAccount's token, client and lock go once its token has expired
    unused, so what is held follows the identities in use, not every one ever met."""
    now = [1000.0]
    monkeypatch.setattr("vaop.kubeclient.time.monotonic", lambda: now[0])
    issued: list[str] = []

    async def create_token(name: str, namespace: str, request: Any) -> Any:
        issued.append(f"{namespace}/{name}")
        return SimpleNamespace(status=SimpleNamespace(token=f"token-{len(issued)}"))

    identities = kubeclient.Identities(client.ApiClient(), client.Configuration(host="https://k8s.test"))
    monkeypatch.setattr(
        identities, "_core", SimpleNamespace(create_namespaced_service_account_token=create_token)
    )
    gone, kept = kubeclient.ServiceAccountRef("old", "tenant"), kubeclient.ServiceAccountRef("t", "tenant")
    await identities.client_for(gone)
    assert REGISTRY.get_sample_value("vaop_cache_entries", {"cache": "identity-clients"}) == 1
    first = await identities.client_for(kept)
    for _ in range(12):  # a minute at a time: "kept" in use, "gone" deleted with its namespace
        now[0] += 60
        renewed = await identities.client_for(kept)
    assert issued == ["old/tenant", "t/tenant", "t/tenant"]  # renewed once, after 8 minutes
    # The same client (and connections), sending the renewed token.
    assert renewed is first and renewed.configuration.api_key == {"BearerToken": "Bearer token-3"}
    assert REGISTRY.get_sample_value("vaop_cache_entries", {"cache": "identity-tokens"}) == 1
    assert REGISTRY.get_sample_value("vaop_cache_entries", {"cache": "identity-clients"}) == 1
    assert list(identities._locks) == [(kept, ())]
    await identities.token(gone)  # met again: a new token, as for a new identity
    assert issued[-1] == "old/tenant"


async def test_identities_send_their_own_tokens_through_connections_they_share(monkeypatch: Any) -> None:
    """A thousand tenants must not hold a thousand TLS connections to the apiserver: each identity's
    requests carry its own token over the one pool of connections, which outlives a forgotten one."""
    seen: list[tuple[str, int]] = []

    async def secret(request: web.Request) -> web.Response:
        port = request.transport.get_extra_info("peername")[1] if request.transport else 0
        seen.append((request.headers["Authorization"], port))
        return web.json_response({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "kek"}})

    async def create_token(name: str, namespace: str, request: Any) -> Any:
        return SimpleNamespace(status=SimpleNamespace(token=f"token-of-{namespace}-{name}"))

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{namespace}/secrets/{name}", secret)
    async with helpers.serving(app) as port:
        server = client.Configuration(host=f"http://127.0.0.1:{port}")
        identities = kubeclient.Identities(client.ApiClient(), server)
        monkeypatch.setattr(
            identities, "_core", SimpleNamespace(create_namespaced_service_account_token=create_token)
        )
        tenants = [kubeclient.ServiceAccountRef(name="vault", namespace=f"tenant-{i}") for i in range(3)]
        for tenant in tenants * 2:
            api = await identities.client_for(tenant)
            await client.CoreV1Api(api).read_namespaced_secret("kek", tenant.namespace)
        assert [token for token, _ in seen] == [f"Bearer token-of-tenant-{i}-vault" for i in range(3)] * 2
        assert len({port for _, port in seen}) == 1  # one connection served all six
        identities.forget(tenants[0], issued_up_to=float("inf"))
        api = await identities.client_for(tenants[1])
        await client.CoreV1Api(api).read_namespaced_secret("kek", "tenant-1")  # the pool is still open
        assert seen[-1][0] == "Bearer token-of-tenant-1-vault"
        await identities.close()


async def test_the_data_apis_authorizations_are_kept_for_seconds_and_then_forgotten(monkeypatch: Any) -> None:
    """One access review serves a user's reads for CACHE_SECONDS; decisions about namespaces that
    came and went do not pile up (the namespace controller lists every deleted namespace's data)."""
    now = [1000.0]
    monkeypatch.setattr("vaop.dataapi.auth.time.monotonic", lambda: now[0])
    reviews: list[str] = []

    async def review(body: Any) -> Any:
        reviews.append(body.spec.resource_attributes.namespace)
        return SimpleNamespace(status=SimpleNamespace(allowed=True, reason=""))

    authorizer = auth.Authorizer(client.ApiClient(), "data.videoanalyzer.io", "v1")
    monkeypatch.setattr(authorizer, "_authorization", SimpleNamespace(create_subject_access_review=review))
    user = auth.User("system:serviceaccount:kube-system:namespace-controller")
    for tenant in range(100):
        for _ in range(3):
            await authorizer.allowed(user, auth.Attributes("list", "videos", namespace=f"tenant-{tenant}"))
        now[0] += 1
    assert len(reviews) == 100  # one each, shared by its three reads
    size = REGISTRY.get_sample_value("vaop_cache_entries", {"cache": "data-api-authorizations"})
    assert size is not None and size <= 2 * auth.CACHE_SECONDS  # those of the last sweep or two
