"""Soak: the operator under steady churn for a long run, watched for growth.

Key "kek" gets a new version every --rotate-every seconds; the accounts' access to it is taken away
every --flap-every seconds for --flap-for seconds (they lock, then recover). Every minute the
operator's resident memory, open file descriptors, sockets, threads, event-loop tasks and the sizes
of its bounded caches (``vaop_cache_entries``) are sampled, and beside them those of a Kopf operator
that only watches the same objects (bench/watch_only_operator.py). At the end every account must be
Active on the last version with the key-check value it started with. Growth is the last sample minus
the first one after the first minute (the first full sweep).

    .venv/bin/python -m bench.soak --minutes 30
    .venv/bin/python -m bench.soak --minutes 30 --trace-memory   # and where the growth is held

With --trace-memory the operator runs under tracemalloc (bench/shim, slower) and the report
adds the allocation sites that grew most over the second half of the run (after the caches filled).

    .venv/bin/python -m bench.soak --week       # a simulated week, every provider (about 21 min)
    .venv/bin/python -m bench.soak --week --days 14 [--malloc-trim]   # two weeks (about 42 min)

--week runs a tenant of each provider (kubernetes, OpenBao, SoftHSM2 over PKCS#11, the Azure Key
Vault stand-in) through a week of what happens to keys, --speedup times faster than real time
(480: a simulated day in 3 minutes). ServiceAccount tokens are renewed every simulated 8 minutes
(the operator's own cadence; bench/shim shortens it), OpenBao and Entra tokens live a simulated
hour, each tenant's key gets a new version every 12 hours and loses access for a while once a
day, and a new tenant (its own namespace, identity and key) arrives every 2 hours and leaves 6
hours later. The check interval is 1 s, short enough for each check to use a renewed token, not scaled
(30 s would be 0.06 s). The report adds glibc's account of the operator's heap at each quarter of
the run (bytes in use, and freed but kept); --malloc-trim hands the freed pages back before
each record, which shows how much of the RSS growth the allocator, not the operator, holds.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import heapq
import itertools
import math
import os
import re
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from kubernetes import client
from tests.integration import azure_stand_in, softhsm

from bench import harness, tenants
from vaopdev import cluster, environment, openbao

WATCH_ONLY = Path(__file__).with_name("watch_only_operator.py")
SHIM = Path(__file__).with_name("shim")  # sitecustomize for the operator: memtrace, token renewals


@dataclass
class Sample:
    minute: float
    rss_mib: float
    fds: int
    sockets: int
    threads: int
    tasks: int | None
    caches: dict[str, int] = field(default_factory=dict)  # vaop_cache_entries, by cache

    def row(self) -> str:
        tasks = f" tasks {self.tasks:3d}" if self.tasks is not None else ""
        caches = "".join(f" {name} {size}" for name, size in sorted(self.caches.items()))
        return (
            f"RSS {self.rss_mib:6.1f} MiB fds {self.fds:3d} sockets {self.sockets:3d} "
            f"threads {self.threads:2d}{tasks}{caches}"
        )


def high_water_mib(pid: int) -> float:
    """The process's peak resident memory since it started (VmHWM), in MiB."""
    return _status_field(Path(f"/proc/{pid}/status").read_text(), "VmHWM") / 1024


def _status_field(status: str, name: str) -> int:
    """A number from /proc/<pid>/status (memory fields in KiB)."""
    return int(re.search(rf"{name}:\s+(\d+)", status)[1])  # type: ignore[index]


def sample(pid: int, minute: float, metrics_url: str | None) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = _status_field(status, "VmRSS") / 1024
    threads = _status_field(status, "Threads")
    fds = os.listdir(f"/proc/{pid}/fd")
    sockets = 0
    for fd in fds:
        with contextlib.suppress(FileNotFoundError):  # closed while we looked
            sockets += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    tasks, caches = None, {}
    if metrics_url:
        text = harness.metrics_text(metrics_url)
        found = re.search(r"^vaop_event_loop_tasks (\S+)$", text, re.MULTILINE)
        tasks = int(float(found[1])) if found else None
        entries = re.finditer(r'^vaop_cache_entries\{cache="([^"]+)"\} (\S+)$', text, re.MULTILINE)
        caches = {match[1]: int(float(match[2])) for match in entries}
    return Sample(minute, rss, len(fds), sockets, threads, tasks, caches)


def watch_only_operator(kubeconfig: Path) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "kopf", "run", "--all-namespaces", "--standalone", str(WATCH_ONLY)]
    return harness.process_running(command, kubeconfig)


@dataclass
class Samples:
    """The operator and the watch-only baseline, sampled every ``every`` seconds."""

    operator: environment.OperatorProcess
    baseline: subprocess.Popen[bytes]
    every: float
    ours: list[Sample] = field(default_factory=list)
    theirs: list[Sample] = field(default_factory=list)
    due_at: float = 0.0

    def take(self, elapsed: float, *, due: bool = True) -> None:
        """A sample of each if one is due (``due`` False: now)."""
        if due and elapsed < self.due_at:
            return
        assert self.operator.popen is not None
        self.ours.append(sample(self.operator.popen.pid, elapsed / 60, self.operator.metrics_url))
        self.theirs.append(sample(self.baseline.pid, elapsed / 60, None))
        print(f"{elapsed / 60:5.1f} min  operator {self.ours[-1].row()} | watch-only {self.theirs[-1].row()}")
        self.due_at += self.every


class Churn:
    """New key versions and access taken away and given back, on schedule."""

    def __init__(self, tenant: tenants.KubernetesTenant, args: argparse.Namespace) -> None:
        self.tenant, self.args = tenant, args
        self.next_rotation, self.next_flap = args.rotate_every, args.flap_every
        self.revoked_at: float | None = None

    def step(self, elapsed: float) -> None:
        if elapsed >= self.next_rotation:
            self.tenant.rotate()
            self.next_rotation += self.args.rotate_every
        if self.revoked_at is None and elapsed >= self.next_flap:
            self.tenant.revoke()
            self.revoked_at = elapsed
        elif self.revoked_at is not None and elapsed >= self.revoked_at + self.args.flap_for:
            self.restore()
            self.next_flap += self.args.flap_every

    def restore(self) -> None:
        if self.revoked_at is not None:
            self.tenant.restore()
            self.revoked_at = None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument(
        "--accounts",
        type=int,
        help="customer-key accounts, per provider with --week (and half as many SystemKey); 100, --week 25",
    )
    parser.add_argument("--week", action="store_true", help="a simulated week with every provider")
    parser.add_argument("--speedup", type=float, default=480, help="--week: simulated seconds per second")
    parser.add_argument("--days", type=float, default=7, help="--week: simulated days")
    parser.add_argument(
        "--rotate-hours",
        type=float,
        default=12,
        help="--week: simulated hours between a key's new versions; 0: none (to tell what follows them)",
    )
    parser.add_argument(
        "--rotate-days", type=float, help="--week: new key versions only in the first days (default: all)"
    )
    parser.add_argument(
        "--providers",
        default=",".join(PROVIDERS),
        help="--week: the tenants' providers, comma-separated (to tell which one a growth follows)",
    )
    parser.add_argument(
        "--malloc-trim", action="store_true", help="--week: malloc_trim(0) in the operator every 30 s"
    )
    parser.add_argument("--rotate-every", type=float, default=60)
    parser.add_argument("--flap-every", type=float, default=90)
    parser.add_argument("--flap-for", type=float, default=20)
    parser.add_argument("--check-interval", type=float, help="seconds; 10, --week 1")
    parser.add_argument("--trace-memory", action="store_true", help="tracemalloc the operator")
    args = parser.parse_args()
    args.providers = args.providers.split(",")
    if unknown := set(args.providers) - set(PROVIDERS):
        parser.error(f"--providers: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PROVIDERS)}")
    if args.accounts is None:
        args.accounts = 25 if args.week else 100
    if args.check_interval is None:
        args.check_interval = 1 if args.week else 10
    settings = {"VAOP_CHECK_INTERVAL": str(args.check_interval), "VAOP_GRACE_PERIOD": "5"}
    path = os.pathsep.join(filter(None, [str(SHIM), os.environ.get("PYTHONPATH")]))
    settings.update(PYTHONPATH=path)
    with harness.scratch() as workdir:
        if args.trace_memory:
            (workdir / "memtrace").mkdir()
            settings.update(VAOP_BENCH_MEMTRACE=str(workdir / "memtrace"))
        if args.week:
            week = Week(
                args.speedup,
                length=args.days * 86400,
                rotate=args.rotate_hours * 3600,
                rotate_until=(args.rotate_days or args.days) * 86400,
            )
            settings.update(
                VAOP_BENCH_TOKEN_RENEW_SECONDS=str(week.real(week.renew)),
                VAOP_BENCH_MALLINFO=str(workdir / "mallinfo"),
            )
            if args.malloc_trim:
                settings.update(VAOP_BENCH_MALLOC_TRIM="1")
            run_week(args, workdir, settings, week)
        else:
            run(args, workdir, settings, args.accounts + args.accounts // 2)
        if args.trace_memory:
            growth(workdir / "memtrace")


def run(args: argparse.Namespace, workdir: Path, settings: dict[str, str], total: int) -> None:
    with harness.environment_running(workdir, settings=settings) as (plane, api, operator):
        ns = harness.namespace(api, "soak")
        tenant = tenants.KubernetesTenant(api, ns)
        harness.create_customer_key_accounts(api, ns, args.accounts, identity=tenants.IDENTITY)
        harness.create_system_key_accounts(api, ns, args.accounts // 2, first=args.accounts)
        harness.wait_until(lambda: harness.all_active(api, ns, total), timeout=600)
        kcvs = harness.key_check_values(api, ns)
        assert plane.admin_kubeconfig is not None
        churn = Churn(tenant, args)
        with watch_only_operator(plane.admin_kubeconfig) as baseline:
            samples, started = Samples(operator, baseline, every=60), time.monotonic()
            while (elapsed := time.monotonic() - started) < args.minutes * 60:
                churn.step(elapsed)
                samples.take(elapsed)
                time.sleep(0.5)
            churn.restore()
            last = tenant.version
            harness.wait_until(
                lambda: harness.all_active(api, ns, total, customer_key_version=last), timeout=600
            )
            samples.take(time.monotonic() - started, due=False)
        assert harness.key_check_values(api, ns) == kcvs, "an account key changed"
    report(args, total, int(tenant.version) - 1, samples.ours, samples.theirs)


@dataclass(frozen=True)
class Week:
    """What a week holds for each tenant, in simulated seconds, passed ``speedup`` times faster."""

    speedup: float
    length: float = 7 * 86400
    renew: float = 480  # the operator renews ServiceAccount tokens after 8 of their 10 minutes
    login: float = 3600  # an OpenBao token's ttl, an Entra access token's lifetime
    rotate: float = 12 * 3600  # each tenant's key gets a new version (0: never)
    rotate_until: float = math.inf  # and no new version after this
    revoke: float = 86400  # each tenant's access is taken away, for --flap-for real seconds
    arrive: float = 2 * 3600  # a new tenant (namespace, identity, key, one account) arrives
    stay: float = 6 * 3600  # and leaves (its namespace deleted) this long after

    def real(self, simulated: float) -> float:
        return simulated / self.speedup


@dataclass
class Tally:
    rotations: collections.Counter[str] = field(default_factory=collections.Counter)
    revocations: collections.Counter[str] = field(default_factory=collections.Counter)
    locked: collections.Counter[str] = field(default_factory=collections.Counter)  # revocations seen to lock
    arrived: int = 0
    left: int = 0


class Schedule:
    """Each tenant's rotations and revocations, spread over the period so they do not coincide,
    and tenants arriving and leaving; ``run_due`` carries out what is due."""

    def __init__(
        self, api: client.ApiClient, week: Week, flap_for: float, standing: list[tenants.Tenant]
    ) -> None:
        self.api, self.week, self.flap_for = api, week, flap_for
        self.tally = Tally()
        self.revoked: set[int] = set()
        self._queue: list[tuple[float, int, str, int]] = []  # (when, order, action, tenant index)
        self._order = itertools.count()
        self.tenants = standing
        self._leaving: collections.deque[str] = collections.deque()  # namespaces of the arrivals
        for index in range(len(standing)):
            spread = (index + 0.5) / len(standing)
            if week.rotate:
                self._at(week.real(week.rotate) * spread, "rotate", index)
            self._at(week.real(week.revoke) * spread, "revoke", index)
        if any(tenant.provider == "kubernetes" for tenant in standing):  # arrivals hold kubernetes keys
            self._at(week.real(week.arrive), "arrive", -1)

    def _at(self, when: float, action: str, index: int) -> None:
        heapq.heappush(self._queue, (when, next(self._order), action, index))

    def run_due(self, elapsed: float) -> None:
        while self._queue and self._queue[0][0] <= elapsed:
            when, _, action, index = heapq.heappop(self._queue)
            getattr(self, action)(when, index)

    def rotate(self, when: float, index: int) -> None:
        self.tenants[index].rotate()
        self.tally.rotations[self.tenants[index].provider] += 1
        if when + self.week.real(self.week.rotate) <= self.week.real(self.week.rotate_until):
            self._at(when + self.week.real(self.week.rotate), "rotate", index)

    def revoke(self, when: float, index: int) -> None:
        self._at(when + self.week.real(self.week.revoke), "revoke", index)
        if index in self.revoked:  # still taken away (a --speedup so high a day is shorter than that)
            return
        self.tenants[index].revoke()
        self.revoked.add(index)
        self.tally.revocations[self.tenants[index].provider] += 1
        self._at(when + self.flap_for, "restore", index)

    def restore(self, when: float, index: int) -> None:
        tenant = self.tenants[index]
        states = [(a.get("status") or {}).get("state") for a in harness.accounts(self.api, tenant.ns)]
        if states and "KeyInaccessible" in states:
            self.tally.locked[tenant.provider] += 1
        tenant.restore()
        self.revoked.discard(index)

    def arrive(self, when: float, _: int) -> None:
        ns = harness.namespace(self.api, "arrival")
        tenants.KubernetesTenant(self.api, ns)
        harness.create_customer_key_accounts(self.api, ns, 1, identity=tenants.IDENTITY)
        self.tally.arrived += 1
        self._leaving.append(ns)
        self._at(when + self.week.real(self.week.arrive), "arrive", -1)
        self._at(when + self.week.real(self.week.stay), "leave", -1)

    def leave(self, when: float, _: int) -> None:
        ns = self._leaving.popleft()  # tenants leave in the order they came
        client.CoreV1Api(self.api).delete_namespace(ns)
        self.tally.left += 1

    def restore_all(self) -> None:
        for index in sorted(self.revoked):
            self.restore(0.0, index)


def run_week(args: argparse.Namespace, workdir: Path, settings: dict[str, str], week: Week) -> None:
    os.environ["SOFTHSM2_CONF"] = str(softhsm.configure(workdir / "softhsm"))  # for us and the operator
    with (
        harness.environment_running(workdir, settings=settings) as (plane, api, operator),
        contextlib.ExitStack() as servers,
    ):
        standing = _standing_tenants(args.providers, plane, api, workdir, servers, week=week)
        sizes = {}
        for tenant in standing:
            harness.create_customer_key_accounts(api, tenant.ns, args.accounts, identity=tenants.IDENTITY)
            sizes[tenant.ns] = args.accounts
        system_ns = standing[0].ns
        harness.create_system_key_accounts(api, system_ns, args.accounts // 2, first=args.accounts)
        sizes[system_ns] += args.accounts // 2
        harness.wait_until(
            lambda: all(harness.all_active(api, ns, n) for ns, n in sizes.items()), timeout=900
        )
        kcvs = {ns: harness.key_check_values(api, ns) for ns in sizes}
        schedule = Schedule(api, week, args.flap_for, standing)
        assert plane.admin_kubeconfig is not None
        since = time.time()
        with watch_only_operator(plane.admin_kubeconfig) as baseline:
            samples, started = Samples(operator, baseline, every=30), time.monotonic()
            while (elapsed := time.monotonic() - started) < week.real(week.length):
                schedule.run_due(elapsed)
                samples.take(elapsed)
                time.sleep(0.2)
            schedule.restore_all()

            def settled() -> bool:
                return all(
                    harness.all_active(api, t.ns, sizes[t.ns], customer_key_version=t.version)
                    for t in standing
                )

            harness.wait_until(settled, timeout=600)
            samples.take(time.monotonic() - started, due=False)
        for ns, values in kcvs.items():
            assert harness.key_check_values(api, ns) == values, f"an account key changed in {ns}"
        requests = harness.request_counts(plane, since=since, users={harness.operator_user()})
        vault_calls = _vault_calls(harness.metrics_text(operator.metrics_url))
    report_week(args, week, tally=schedule.tally, samples=samples, requests=requests, vault_calls=vault_calls)
    report_heap(workdir / "mallinfo", trimmed=args.malloc_trim)


PROVIDERS = ("kubernetes", "openbao", "pkcs11", "azureKeyVault")


def _standing_tenants(
    providers: list[str],
    plane: cluster.ControlPlane,
    api: client.ApiClient,
    workdir: Path,
    servers: contextlib.ExitStack,
    *,
    week: Week,
) -> list[tenants.Tenant]:
    """A tenant of each provider asked for, in its own namespace; its vault server (OpenBao, the Azure
    stand-in) started, and stopped when ``servers`` closes."""
    standing: list[tenants.Tenant] = []
    login = max(1, round(week.real(week.login)))  # seconds an OpenBao or Entra token lives
    for provider in providers:
        ns = harness.namespace(api, provider.lower())
        if provider == "kubernetes":
            standing.append(tenants.KubernetesTenant(api, ns))
        elif provider == "openbao":
            bao = openbao.start(plane, api, workdir / "openbao")
            servers.callback(bao.stop)
            standing.append(tenants.OpenBaoTenant(api, ns, bao, ttl=f"{login}s"))
        elif provider == "pkcs11":
            standing.append(tenants.Pkcs11Tenant(api, ns))
        else:
            (workdir / "azure").mkdir()
            azure = azure_stand_in.start(api, workdir / "azure")
            servers.callback(azure.stop)
            azure.token_seconds = login
            standing.append(tenants.AzureTenant(api, ns, azure))
    return standing


def report_heap(path: Path, *, trimmed: bool) -> None:
    """glibc's account of the operator's heap (``bench/shim``) after the first sweep, at each quarter
    of the run and after it: what it still holds, what it freed but keeps (of which at the heap's
    top), what it mapped for large blocks (the last record comes after the churn has stopped, with
    nothing in flight); then the freed chunks by size, early and late in the churn."""
    records = [[float(value) for value in line.split()] for line in path.read_text().splitlines()]
    if len(records) < 5:
        print("too few heap records to compare; run for longer")
        return
    print(f"the operator's heap by glibc (mallinfo2{', after malloc_trim' if trimmed else ''}), MiB:")
    quarters = [records[1], *(records[len(records) * q // 4] for q in (1, 2, 3)), records[-1]]
    for minute, used, free, mapped, top in quarters:
        print(
            f"  minute {minute:5.1f}: in use {used / 2**20:6.1f}, free but kept {free / 2**20:6.1f} "
            f"(at the top {top / 2**20:5.1f}), mmapped {mapped / 2**20:6.1f}"
        )
    print("freed chunks the heap keeps, by size (malloc_info, all arenas), MiB:")
    for minute, *_ in (records[len(records) // 4], records[-2]):
        buckets = _free_chunks(path.with_name(f"{path.name}.{minute:06.2f}.xml"))
        shown = ", ".join(f"{name} {size / 2**20:5.1f}" for name, size in buckets.items())
        print(f"  minute {minute:5.1f}: {shown}")


FREE_CHUNK_BUCKETS = ((1024, "< 1 KiB"), (64 * 1024, "1-64 KiB"), (float("inf"), ">= 64 KiB"))


def _free_chunks(xml: Path) -> dict[str, float]:
    """Bytes in free chunks by size class, from glibc's ``malloc_info``: the bins' chunks (each entry
    a range of sizes, bucketed by its lower end) and, apart, each arena's top chunk (what its
    ``rest`` total holds beyond its bins)."""
    buckets = dict.fromkeys([name for _, name in FREE_CHUNK_BUCKETS] + ["tops"], 0.0)
    written_by_glibc = ElementTree.parse(xml)  # noqa: S314 (the operator's own malloc_info)
    for heap in written_by_glibc.getroot().iter("heap"):
        in_bins = 0.0
        for entry in heap.iterfind("sizes/*"):
            size, low = float(entry.get("total", 0)), float(entry.get("from", 0))
            in_bins += size
            buckets[next(name for limit, name in FREE_CHUNK_BUCKETS if low < limit)] += size
        totals = {t.get("type"): float(t.get("size", 0)) for t in heap.findall("total")}
        buckets["tops"] += totals.get("fast", 0) + totals.get("rest", 0) - in_bins
    return buckets


def _vault_calls(metrics: str) -> collections.Counter[str]:
    """The operator's calls to vaults since it started (wrap, unwrap, rewrap, versions, properties), by
    provider."""
    counts: collections.Counter[str] = collections.Counter()
    pattern = r'^vaop_provider_call_duration_seconds_count\{[^}]*provider="([^"]+)"[^}]*\} (\S+)$'
    for match in re.finditer(pattern, metrics, re.MULTILINE):
        counts[match[1]] += int(float(match[2]))
    return counts


def report_week(
    args: argparse.Namespace,
    week: Week,
    *,
    tally: Tally,
    samples: Samples,
    requests: collections.Counter[str],
    vault_calls: collections.Counter[str],
) -> None:
    minutes = week.real(week.length) / 60
    print(
        f"\n{week.length / 86400:.0f} simulated days in {minutes:.0f} min ({week.speedup:.0f}x), "
        f"{args.accounts} accounts per provider"
    )
    print(
        f"ServiceAccount token renewals per identity: {week.length / week.renew:.0f} "
        f"(every {week.real(week.renew):.1f} s)"
    )
    print(f"TokenRequests the operator made: {requests['create serviceaccounts/token']}")
    for provider in sorted(tally.rotations | tally.revocations):
        print(
            f"  {provider:10} rotations {tally.rotations[provider]:3d}, "
            f"revocations {tally.revocations[provider]:2d} "
            f"(locked when restored: {tally.locked[provider]}), vault calls {vault_calls[provider]}"
        )
    print(f"tenants arrived {tally.arrived}, left {tally.left}")
    print("at the end: every account Active on its key's last version, every key-check value unchanged")
    first = 1 if len(samples.ours) > 2 else 0
    for name, taken in (("operator", samples.ours), ("watch-only kopf", samples.theirs)):
        a, b = taken[first], taken[-1]
        peak = max(s.rss_mib for s in taken[first:])
        print(f"{name:16} minute {a.minute:4.1f}: {a.row()}")
        print(
            f"{'':16} minute {b.minute:4.1f}: {b.row()}  "
            f"(RSS {b.rss_mib - a.rss_mib:+.1f} MiB, peak {peak:.1f})"
        )
    caches = sorted({name for s in samples.ours for name in s.caches})
    print("caches, largest size seen after the first sample:")
    for name in caches:
        print(f"  {name:28} {max(s.caches.get(name, 0) for s in samples.ours[first:]):6d}")


def growth(folder: Path, top: int = 15) -> None:
    """The allocation sites that grew most over the second half of the run: by then the caches
    kept for a token's lifetime (10 real minutes) have filled, when the run is 20 minutes or more."""
    snapshots = sorted(folder.glob("*.snapshot"))
    if len(snapshots) < 3:
        print("too few memory snapshots to compare; run for longer")
        return
    middle = snapshots[len(snapshots) // 2]
    first, last = (tracemalloc.Snapshot.load(str(path)) for path in (middle, snapshots[-1]))
    sizes = [sum(stat.size for stat in snapshot.statistics("filename")) for snapshot in (first, last)]
    print(
        f"\nPython allocations traced: {sizes[0] / 2**20:.1f} MiB at minute {middle.stem}, "
        f"{sizes[1] / 2**20:.1f} MiB at minute {snapshots[-1].stem}"
    )
    print(f"grown most between minute {middle.stem} and minute {snapshots[-1].stem} (tracemalloc):")
    for stat in last.compare_to(first, "traceback")[:top]:
        # The allocating line first, then its callers (a traceback lists the oldest frame first).
        frames = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(stat.traceback[-5:]))
        print(f"  {stat.size_diff / 1024:+8.1f} KiB {stat.count_diff:+6d} blocks  {frames}")


def report(
    args: argparse.Namespace, total: int, rotations: int, ours: list[Sample], theirs: list[Sample]
) -> None:
    print(
        f"\n{args.minutes:.0f} min, {total} accounts, {rotations} rotations, "
        f"access revoked for {args.flap_for:.0f} s every {args.flap_every:.0f} s"
    )
    print("at the end: every account Active on the last version, every key-check value unchanged")
    first = 1 if len(ours) > 2 else 0
    for name, samples in (("operator", ours), ("watch-only kopf", theirs)):
        a, b = samples[first], samples[-1]
        print(f"{name:16} minute {a.minute:4.1f}: {a.row()}")
        print(f"{'':16} minute {b.minute:4.1f}: {b.row()}  (RSS {b.rss_mib - a.rss_mib:+.1f} MiB)")
    print(f"RSS, operator / watch-only kopf, at the end: {ours[-1].rss_mib / theirs[-1].rss_mib:.2f}x")


if __name__ == "__main__":
    main()
