"""The data API's cache of SealedObjects: what a list and a watch see, fed event by event as the
reflector feeds it, with the apiserver replaced by a recorder of the marker writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from vaop.dataapi import cache, kinds, storage, verbs
from vaop.dataapi.documents import ApiError

VIDEO = kinds.BY_KIND["Video"]


def record(name: str, version: int, *, namespace: str = "tenant", kind: str = "Video") -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": f"sealed-{name}", "resourceVersion": str(version)},
        "spec": {"kind": kind, "name": name},
    }


class Marks:
    """The apiserver's side of the marker writes: each gets the next version; the test decides when
    the watch delivers it."""

    def __init__(self) -> None:
        self.version = 100
        self.writes = 0
        self.gate = asyncio.Event()

    async def patch_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        await self.gate.wait()
        self.writes += 1
        self.version += 1
        return {"metadata": {"resourceVersion": str(self.version)}}


async def filled(*records: dict[str, Any], version: int = 10) -> cache.SealedCache:
    sealed = cache.SealedCache(object(), namespace="operator")

    async def listed() -> AsyncIterator[storage.SealedObject]:
        for one in records:
            yield one

    await sealed.replace(listed())
    sealed.progressed(str(version))
    return sealed


async def test_lists_are_by_namespace_then_name_and_leave_the_marker_out() -> None:
    sealed = await filled(
        record("b", 3),
        record("a", 4, namespace="z"),
        record("c", 5),
        record("m", 6, kind=cache.PROGRESS_KIND),
    )
    assert [(r["metadata"]["namespace"], r["spec"]["name"]) for r in sealed.listed(VIDEO, None)] == [
        ("tenant", "b"),
        ("tenant", "c"),
        ("z", "a"),
    ]
    assert [r["spec"]["name"] for r in sealed.listed(VIDEO, "tenant")] == ["b", "c"]
    held = [r["spec"]["name"] for r in sealed.listed(VIDEO, None)]
    assert "c" in held and "m" not in held, "the progress marker is not data"


async def test_a_watch_resumes_from_the_history_and_a_too_old_version_is_gone() -> None:
    sealed = await filled(record("a", 5))
    sealed.changed("ADDED", record("b", 11))
    sealed.progressed("11")
    sealed.changed("DELETED", record("a", 12))
    sealed.progressed("12")
    changes = sealed.changes(VIDEO, "tenant", since=11)
    assert await anext(changes) == (12, "DELETED", record("a", 12))
    sealed.changed("MODIFIED", record("b", 13))
    sealed.progressed("13")
    assert (await anext(changes))[:2] == (13, "MODIFIED")
    await changes.aclose()
    with pytest.raises(cache.Gone):
        await anext(sealed.changes(VIDEO, "tenant", since=9))  # before the first listing


async def test_a_watch_without_a_version_starts_with_the_objects_then_follows() -> None:
    sealed = await filled(record("a", 5), record("b", 6))
    changes = sealed.changes(VIDEO, "tenant", since=None)
    assert [(await anext(changes))[1:3] for _ in range(2)] == [
        ("ADDED", record("a", 5)),
        ("ADDED", record("b", 6)),
    ]
    sealed.changed("ADDED", record("c", 11, namespace="elsewhere"))  # not this namespace's
    sealed.changed("ADDED", record("d", 12))
    assert (await anext(changes))[2]["spec"]["name"] == "d"
    await changes.aclose()


async def test_a_slow_watcher_is_closed_rather_than_held_without_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cache, "WATCHER_BACKLOG", 3)
    sealed = await filled()
    changes = sealed.changes(VIDEO, "tenant", since=10)
    waiting = asyncio.ensure_future(anext(changes))
    await asyncio.sleep(0)
    for version in range(11, 20):
        sealed.changed("ADDED", record(f"o{version}", version))
    first = await waiting
    assert first[0] == 11
    rest = [event[0] async for event in changes]
    assert rest and rest == list(range(12, 12 + len(rest))) and len(rest) < 8  # then it ends: resume


async def test_pages_keep_their_snapshot_and_an_old_token_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    sealed = await filled(record("a", 5), record("b", 6))
    ident = sealed.snapshot(sealed.listed(VIDEO, "tenant"), 10, VIDEO, "tenant")
    token = sealed.token(ident, 1)
    sealed.changed("ADDED", record("c", 11))
    _, records, version, offset = sealed.resumed(token, VIDEO, "tenant")
    assert [r["spec"]["name"] for r in records[offset:]] == ["b"] and version == 10
    for other_kind, other_namespace in (
        (kinds.BY_KIND["AccessPolicy"], "tenant"),
        (VIDEO, "other"),
        (VIDEO, None),
    ):
        with pytest.raises(ApiError) as elsewhere:
            sealed.resumed(token, other_kind, other_namespace)
        assert elsewhere.value.code == 400, "a token goes on with its own list only"
    monkeypatch.setattr(cache, "SNAPSHOTS", 1)
    sealed.snapshot([], 11, VIDEO, "tenant")
    with pytest.raises(ApiError) as expired:
        sealed.resumed(token, VIDEO, "tenant")
    assert expired.value.code == 410
    with pytest.raises(ApiError) as foreign:
        sealed.resumed("bm90IG91cnM=", VIDEO, "tenant")
    assert foreign.value.code == 400


async def test_a_consistent_read_waits_for_a_marker_written_after_it_came() -> None:
    sealed = await filled()
    marks = Marks()
    sealed._custom = marks
    first = asyncio.ensure_future(sealed.consistent())
    await asyncio.sleep(0)
    second = asyncio.ensure_future(sealed.consistent())  # came while the first marker is being written
    await asyncio.sleep(0)
    marks.gate.set()
    await asyncio.sleep(0.01)
    assert marks.writes == 2, "a reader that came during a marker write waits for the next one"
    assert not first.done(), "written is not enough: the watch must have delivered it"
    sealed.progressed("101")
    await asyncio.sleep(0.01)
    assert first.done() and not second.done()
    sealed.progressed("102")
    await second
    third, fourth = sealed.consistent(), sealed.consistent()  # arriving together: one marker
    gathered = asyncio.gather(third, fourth)
    await asyncio.sleep(0.01)
    sealed.progressed("103")
    await gathered
    assert marks.writes == 3


async def test_a_version_never_reached_is_refused_with_504(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "VERSION_WAIT", 0.05)
    sealed = await filled()
    with pytest.raises(ApiError) as refused:
        await sealed.reached(50)
    assert refused.value.code == 504 and "Too large resource version: 50" in str(refused.value)
    assert sealed._waiters == [], "a request that gave up leaves nothing behind"
    await sealed.reached(10)  # reached: at once


async def test_a_get_at_a_version_is_served_from_the_cache_and_one_without_reads_storage() -> None:
    """As the apiserver serves its GETs: no resourceVersion is a read of storage (every finished write
    shows), "0" or a number is the cache's (at least that version)."""
    sealed = await filled(record("a", 3), version=10)

    class Storage:
        reads = 0

        async def get(self, kind: kinds.Kind, namespace: str, name: str) -> dict[str, Any]:
            self.reads += 1
            return record(name, 12)

    class Unsealed:
        async def open(self, sealed_record: dict[str, Any]) -> dict[str, Any]:
            return sealed_record

    store = Storage()
    service = verbs.DataService(store, None, sealed)  # type: ignore[arg-type]
    service._sealing = Unsealed()  # type: ignore[assignment]
    assert (await service.get(VIDEO, "tenant", "a", resource_version="0"))["metadata"][
        "resourceVersion"
    ] == "3"
    assert (await service.get(VIDEO, "tenant", "a", resource_version="10"))["metadata"][
        "resourceVersion"
    ] == "3"
    assert store.reads == 0
    assert (await service.get(VIDEO, "tenant", "a"))["metadata"]["resourceVersion"] == "12"
    assert store.reads == 1
    with pytest.raises(ApiError) as missing:
        await service.get(VIDEO, "tenant", "b", resource_version="0")
    assert missing.value.code == 404 and 'videos.data.videoanalyzer.io "b" not found' in str(missing.value)
    with pytest.raises(ApiError) as malformed:
        await service.get(VIDEO, "tenant", "a", resource_version="x")
    assert malformed.value.code == 400
