"""The data API (sealed Videos through the aggregated API) beside a CRD of the same shape, same run.

Baseline: a CustomResourceDefinition ``plainvideos.bench.videoanalyzer.io`` with the Video's schema,
served by the same kube-apiserver (no aggregation, no sealing). Both get N creates, single GETs,
full LISTs (consistent, and at resourceVersion 0), paged LISTs (500 a page) and a watch fanned out
to W watchers, through the kube-apiserver, from the same client. The creates go in turns, A-B-B-A
(--chunks, 4), and the reads alternate, A-B-A-B, so neither kind meets a fuller or a warmer store.
A consistent GET (no resourceVersion) must read the main apiserver's storage, as the apiserver's
own consistent GETs read etcd, so its two legs are also timed alone: the hop through the aggregator
(the group's discovery, answered from memory) and a GET of the SealedObject. The operator's and the
apiserver's resident memory are read before and after: the operator's growth is its cache of
SealedObjects.

    .venv/bin/python -m bench.data_api --objects 1000 --watchers 100
    .venv/bin/python -m bench.data_api --objects 1000 --profile   # where the creates' CPU goes
"""

from __future__ import annotations

import argparse
import collections
import copy
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch
from tests import helpers

from bench import harness
from vaop.dataapi import kinds, storage
from vaopdev import cluster

DATA = ("data.videoanalyzer.io", "v1alpha1", "videos", "Video")
PLAIN = ("bench.videoanalyzer.io", "v1", "plainvideos", "PlainVideo")
KINDS = {"data": DATA, "plain": PLAIN}


def _plain_crd(api: client.ApiClient) -> None:
    spec_schema = {
        "type": "object",
        "properties": {
            "accountName": {"type": "string"},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "archival": {"type": "object", "properties": {"retentionPeriod": {"type": "string"}}},
        },
    }
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "plainvideos.bench.videoanalyzer.io"},
        "spec": {
            "group": PLAIN[0],
            "scope": "Namespaced",
            "names": {"kind": PLAIN[3], "plural": PLAIN[2], "singular": "plainvideo"},
            "versions": [
                {
                    "name": PLAIN[1],
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}},
                }
            ],
        },
    }
    client.ApiextensionsV1Api(api).create_custom_resource_definition(body)
    time.sleep(3)  # the CRD's endpoint appears


def _create_all(api: client.ApiClient, ns: str, kind: tuple[str, str, str, str], names: range) -> float:
    group, version, plural, name = kind
    custom = client.CustomObjectsApi(api)

    def create(i: int) -> None:
        body: dict[str, Any] = {
            "apiVersion": f"{group}/{version}",
            "kind": name,
            "metadata": {"name": f"v-{i:05d}", "labels": {"camera": f"c{i % 10}"}},
            "spec": {
                "accountName": "studio",
                "title": f"Camera {i}",
                "description": "Front door",
                "archival": {},
            },
        }
        custom.create_namespaced_custom_object(group, version, ns, plural, body)

    return harness.timed(lambda: harness.parallel(list(names), create))


@dataclass
class Creates:
    """Each kind's creates: seconds per chunk, CPU of each process in all, profiles."""

    cpu: dict[str, collections.Counter[str]] = field(
        default_factory=lambda: {"plain": collections.Counter(), "data": collections.Counter()}
    )
    chunks: dict[str, list[float]] = field(default_factory=lambda: {"plain": [], "data": []})
    profiles: dict[str, list[str]] = field(default_factory=dict)

    def seconds(self, which: str) -> float:
        return sum(self.chunks[which])


def _create_both(
    plane: cluster.ControlPlane,
    api: client.ApiClient,
    operator_pid: int,
    namespaces: dict[str, str],
    count: int,
    *,
    chunks: int,
    profile: bool,
) -> Creates:
    """N creates of each kind, in ``chunks`` turns alternating A-B-B-A, so neither kind meets a store
    the other has filled more. With ``profile``, py-spy's view of the operator during the data API's
    first chunk, and the apiserver's over each kind's first 10 s (kept as
    /tmp/vaop-apiserver-{plain,data}.pprof)."""
    pids = harness.cpu_pids(plane, operator_pid)
    found = Creates()
    size = -(-count // chunks)
    for turn in range(chunks):
        names = range(turn * size, min(count, (turn + 1) * size))
        for which in ("plain", "data") if turn % 2 == 0 else ("data", "plain"):
            first = turn == 0
            with (
                harness.cpu_used(pids) as used,
                harness.profiled(operator_pid, enabled=profile and first and which == "data") as operator_top,
                harness.apiserver_profiled(
                    plane, enabled=profile and first, keep_as=harness.kept_profile(which)
                ) as apiserver_top,
            ):
                found.chunks[which].append(_create_all(api, namespaces[which], KINDS[which], names))
            found.cpu[which].update(used)
            if first:
                found.profiles[f"operator ({which} creates, first chunk)"] = operator_top
                found.profiles[f"kube-apiserver ({which} creates, first 10 s)"] = apiserver_top
    return found


def _gets(
    api: client.ApiClient, ns: str, kind: tuple[str, str, str, str], count: int, version: str | None = None
) -> list[float]:
    """Seconds each of 200 GETs took, of names spread over the ``count`` objects; with ``version``,
    GETs at that resourceVersion ("0": from either server's cache)."""
    group, version_of_api, plural, _ = kind
    gets = []
    for i in range(0, count, max(1, count // 200)):
        path = f"/apis/{group}/{version_of_api}/namespaces/{ns}/{plural}/v-{i:05d}"
        started = time.perf_counter()
        helpers.read_at(api, path, version)
        gets.append(time.perf_counter() - started)
    return gets


def _stored_gets(api: client.ApiClient, ns: str, count: int) -> list[float]:
    """Seconds each of 200 GETs of the SealedObjects behind the Videos took: the read a consistent
    data API GET makes in the main apiserver, timed alone from this client."""
    gets = []
    for i in range(0, count, max(1, count // 200)):
        stored = kinds.KINDS["videos"].storage_name(f"v-{i:05d}")
        path = f"/apis/{storage.GROUP}/{storage.VERSION}/namespaces/{ns}/{storage.PLURAL}/{stored}"
        started = time.perf_counter()
        helpers.read_at(api, path, None)  # as ``_gets`` reads the Videos and the CRD's objects
        gets.append(time.perf_counter() - started)
    return gets


def _reads(api: client.ApiClient, ns: str, kind: tuple[str, str, str, str], count: int) -> dict[str, float]:
    """One round of reads: a GET median over 200 names, one LIST of each sort."""
    group, version, plural, _ = kind
    custom = client.CustomObjectsApi(api)
    gets, cached_gets = _gets(api, ns, kind, count), _gets(api, ns, kind, count, version="0")

    def list_all(**options: Any) -> None:
        items = custom.list_namespaced_custom_object(group, version, ns, plural, **options)["items"]
        assert len(items) == count, len(items)

    def list_paged() -> None:
        seen, token = 0, None
        while True:
            page = custom.list_namespaced_custom_object(
                group, version, ns, plural, limit=500, _continue=token
            )
            seen += len(page["items"])
            token = page["metadata"].get("continue")
            if not token:
                break
        assert seen == count, seen

    hops = []
    for _ in range(100):  # the group's discovery: the path to the server, without storage or objects
        started = time.perf_counter()
        custom.get_api_resources(group, version)
        hops.append(time.perf_counter() - started)
    legs = {"stored_get_p50": statistics.median(_stored_gets(api, ns, count))} if kind == DATA else {}
    return legs | {
        "get_p50": statistics.median(gets),
        "get_rv0_p50": statistics.median(cached_gets),
        "hop_p50": statistics.median(hops),
        "list": harness.timed(list_all),
        "list_rv0": harness.timed(lambda: list_all(resource_version="0")),
        "list_paged": harness.timed(list_paged),
    }


def _fan_out(api: client.ApiClient, ns: str, kind: tuple[str, str, str, str], watchers: int) -> list[float]:
    """Seconds from each of 20 creates' answer to its ADDED event at every one of ``watchers``
    watches (one list of all those delays)."""
    group, version, plural, name = kind
    settings = copy.copy(api.configuration)
    settings.connection_pool_maxsize = watchers + 8  # a connection each, as separate clients have
    custom = client.CustomObjectsApi(client.ApiClient(settings))
    start = custom.list_namespaced_custom_object(group, version, ns, plural, limit=1)["metadata"][
        "resourceVersion"
    ]
    arrived: dict[str, list[float]] = {}
    lock = threading.Lock()
    opened = threading.Barrier(watchers + 1)

    def watch_one() -> None:
        stream = watch.Watch()
        opened.wait()
        for event in stream.stream(
            custom.list_namespaced_custom_object,
            group,
            version,
            ns,
            plural,
            resource_version=start,
            timeout_seconds=60,
            label_selector="fan=out",
        ):
            now = time.perf_counter()
            with lock:
                arrived.setdefault(event["object"]["metadata"]["name"], []).append(now)
            if event["object"]["metadata"]["name"] == "f-019":
                break

    threads = [threading.Thread(target=watch_one, daemon=True) for _ in range(watchers)]
    for thread in threads:
        thread.start()
    opened.wait()
    time.sleep(2.0)  # every watch open
    answered: dict[str, float] = {}
    for i in range(20):
        body = {
            "apiVersion": f"{group}/{version}",
            "kind": name,
            "metadata": {"name": f"f-{i:03d}", "labels": {"fan": "out"}},
            "spec": {"accountName": "studio", "title": f"Fan {i}", "description": "out", "archival": {}},
        }
        custom.create_namespaced_custom_object(group, version, ns, plural, body)
        answered[f"f-{i:03d}"] = time.perf_counter()
        time.sleep(0.1)
    for thread in threads:
        thread.join(timeout=60)
    delays = [t - answered[n] for n, times in arrived.items() if n in answered for t in times]
    assert len(delays) == 20 * watchers, f"{len(delays)} of {20 * watchers} events arrived"
    return delays


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        lines = status.read().splitlines()
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _namespace_with_an_account(api: client.ApiClient) -> str:
    """A new namespace with an Active SystemKey account "studio", for the data API's objects."""
    ns = harness.namespace(api, "data")
    body = {
        "apiVersion": "videoanalyzer.io/v1alpha1",
        "kind": "VideoAnalyzerAccount",
        "metadata": {"name": "studio"},
        "spec": {"region": "westeurope"},
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "videoanalyzer.io", "v1alpha1", ns, "videoanalyzeraccounts", body
    )
    harness.wait_until(
        lambda: harness.accounts(api, ns)[0].get("status", {}).get("state") == "Active", timeout=60
    )
    return ns


def _profiled_gets(api: client.ApiClient, ns: str, count: int, operator_pid: int) -> list[str]:
    """py-spy's view of the operator over 2,000 data API GETs."""
    with harness.profiled(operator_pid) as top:
        for _ in range(10):
            _gets(api, ns, DATA, count)
    return top


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of reads, alternating A-B")
    parser.add_argument("--chunks", type=int, default=4, help="turns of creates, alternating A-B-B-A")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy on the operator during the data API's creates, and the apiserver's pprof over the "
        "first 10 s of each kind's creates (slows the data API's creates)",
    )
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    count = args.objects
    with (
        harness.scratch() as workdir,
        harness.environment_running(workdir, profiling=args.profile) as (plane, api, operator),
    ):
        assert operator.popen is not None
        ns = _namespace_with_an_account(api)
        _plain_crd(api)
        plain_ns = harness.namespace(api, "plain")
        pids = {"operator": operator.popen.pid, "kube-apiserver": plane.pids()["kube-apiserver"]}
        rss_before = {name: _rss_mib(pid) for name, pid in pids.items()}
        creates = _create_both(
            plane,
            api,
            operator.popen.pid,
            {"plain": plain_ns, "data": ns},
            count,
            chunks=args.chunks,
            profile=args.profile,
        )
        profiles = creates.profiles
        rss_created = {name: _rss_mib(pid) for name, pid in pids.items()}
        rounds: dict[str, list[dict[str, float]]] = {"plain": [], "data": []}
        rss_by_round = []  # the operator's, after each round of reads
        for _ in range(args.rounds):
            with harness.collector_paused():
                rounds["data"].append(_reads(api, ns, DATA, count))
            with harness.collector_paused():
                rounds["plain"].append(_reads(api, plain_ns, PLAIN, count))
            rss_by_round.append(_rss_mib(pids["operator"]))
        if args.profile:  # after the measured rounds
            profiles["operator (2,000 data API GETs)"] = _profiled_gets(api, ns, count, operator.popen.pid)
        custom = client.CustomObjectsApi(api)
        storage_list = statistics.median(
            harness.timed(
                lambda: custom.list_namespaced_custom_object(
                    "internal.videoanalyzer.io", "v1alpha1", ns, "sealedobjects"
                )
            )
            for _ in range(3)
        )
        rss_after = {name: _rss_mib(pid) for name, pid in pids.items()}
        fan = {
            "data": _fan_out(api, ns, DATA, args.watchers),
            "plain": _fan_out(api, plain_ns, PLAIN, args.watchers),
        }

    def median_of(which: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds[which])

    data = {key: median_of("data", key) for key in rounds["data"][0]} | {"create": creates.seconds("data")}
    plain = {key: median_of("plain", key) for key in rounds["plain"][0]} | {
        "create": creates.seconds("plain")
    }

    def show(label: str, key: str) -> None:
        print(
            f"{label:<22} data API {data[key] * 1000:9.1f} ms   CRD {plain[key] * 1000:9.1f} ms   "
            f"ratio {data[key] / plain[key]:.1f}x"
        )

    print(f"objects: {count}, rounds of reads: {args.rounds} (medians)")
    show(f"create {count} (8 writers)", "create")
    for which in ("data", "plain"):
        used = ", ".join(f"{name} {seconds:.1f}" for name, seconds in creates.cpu[which].items())
        turns = ", ".join(f"{seconds:.1f}" for seconds in creates.chunks[which])
        print(f"  {which}: CPU seconds during the creates: {used}; seconds per chunk (A-B-B-A): {turns}")
    show("GET, median", "get_p50")
    show("GET rv=0, median", "get_rv0_p50")
    show("GET discovery, median", "hop_p50")
    floor = data["hop_p50"] + data["stored_get_p50"]
    print(
        f"  a consistent GET's two legs alone: the hop to the data API {data['hop_p50'] * 1000:.1f} ms "
        f"+ a SealedObject GET {data['stored_get_p50'] * 1000:.1f} ms = {floor * 1000:.1f} ms, "
        f"{floor / plain['get_p50']:.1f}x the CRD's GET; the data API's GET is "
        f"{data['get_p50'] / floor:.2f}x its legs"
    )
    show(f"LIST {count} (consistent)", "list")
    show(f"LIST {count} (rv=0)", "list_rv0")
    show(f"LIST {count} (pages of 500)", "list_paged")
    print(
        f"LIST {count} SealedObjects (what the data API read before its cache): {storage_list * 1000:.1f} ms"
    )
    for which in ("data", "plain"):
        delays = sorted(fan[which])
        p50, p99 = delays[len(delays) // 2], delays[int(len(delays) * 0.99)]
        print(
            f"watch fan-out, {args.watchers} watchers, {which:<5}: event after the create's answer "
            f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
        )
    _memory_report(count, [rss_before, rss_created, rss_after], rss_by_round)
    for title, lines in profiles.items():
        if lines:
            print(f"profile of the {title}:", *lines, sep="\n")


def _memory_report(count: int, taken: list[dict[str, float]], operator_by_round: list[float]) -> None:
    """RSS of each process before, after the creates and after the reads; the operator's by round."""
    before, created, after = taken
    for name in before:
        print(
            f"{name} RSS: {before[name]:.0f} MiB before, {created[name]:.0f} MiB after the creates, "
            f"{after[name]:.0f} MiB after the reads of {count} objects of each "
            f"(+{after[name] - before[name]:.0f} MiB)"
        )
    rounds = ", ".join(f"{rss:.0f}" for rss in operator_by_round)
    print(f"operator RSS after each round of reads: {rounds} MiB")


if __name__ == "__main__":
    main()
