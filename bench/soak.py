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

With --trace-memory the operator runs under tracemalloc (bench/memtrace, slower) and the report
adds the allocation sites that grew most between the first sample after the sweep and the last.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client

from bench import harness

WATCH_ONLY = Path(__file__).with_name("watch_only_operator.py")
MEMTRACE = Path(__file__).with_name("memtrace")


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


class Churn:
    """New key versions and access taken away and given back, on schedule."""

    def __init__(self, api: client.ApiClient, ns: str, args: argparse.Namespace) -> None:
        self.api, self.ns, self.args = api, ns, args
        self.version = 1
        self.next_rotation, self.next_flap = args.rotate_every, args.flap_every
        self.revoked_at: float | None = None

    def step(self, elapsed: float) -> None:
        if elapsed >= self.next_rotation:
            self.version += 1
            harness.put_key_version(self.api, self.ns, self.version)
            self.next_rotation += self.args.rotate_every
        if self.revoked_at is None and elapsed >= self.next_flap:
            harness.revoke_keys(self.api, self.ns)
            self.revoked_at = elapsed
        elif self.revoked_at is not None and elapsed >= self.revoked_at + self.args.flap_for:
            self.restore()
            self.next_flap += self.args.flap_every

    def restore(self) -> None:
        if self.revoked_at is not None:
            harness.grant_keys(self.api, self.ns, identity="tenant")
            self.revoked_at = None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument(
        "--accounts", type=int, default=100, help="customer-key accounts (and half as many SystemKey)"
    )
    parser.add_argument("--rotate-every", type=float, default=60)
    parser.add_argument("--flap-every", type=float, default=90)
    parser.add_argument("--flap-for", type=float, default=20)
    parser.add_argument("--check-interval", type=float, default=10)
    parser.add_argument("--trace-memory", action="store_true", help="tracemalloc the operator")
    args = parser.parse_args()
    settings = {"VAOP_CHECK_INTERVAL": str(args.check_interval), "VAOP_GRACE_PERIOD": "5"}
    total = args.accounts + args.accounts // 2
    with harness.scratch() as workdir:
        if args.trace_memory:
            (workdir / "memtrace").mkdir()
            path = os.pathsep.join(filter(None, [str(MEMTRACE), os.environ.get("PYTHONPATH")]))
            settings.update(PYTHONPATH=path, VAOP_BENCH_MEMTRACE=str(workdir / "memtrace"))
        run(args, workdir, settings, total)


def run(args: argparse.Namespace, workdir: Path, settings: dict[str, str], total: int) -> None:
    with harness.environment_running(workdir, settings=settings) as (plane, api, operator):
        ns = harness.namespace(api, "soak")
        harness.kubernetes_key_tenant(api, ns, identity="tenant")
        harness.put_key_version(api, ns, 1)
        harness.create_customer_key_accounts(api, ns, args.accounts, identity="tenant")
        harness.create_system_key_accounts(api, ns, args.accounts // 2, first=args.accounts)
        harness.wait_until(lambda: harness.all_active(api, ns, total), timeout=600)
        kcvs = harness.key_check_values(api, ns)
        assert operator.popen is not None and plane.admin_kubeconfig is not None
        ours, theirs = [], []
        churn = Churn(api, ns, args)
        with watch_only_operator(plane.admin_kubeconfig) as baseline:
            started, next_sample = time.monotonic(), 0.0
            while (elapsed := time.monotonic() - started) < args.minutes * 60:
                churn.step(elapsed)
                if elapsed >= next_sample:
                    ours.append(sample(operator.popen.pid, elapsed / 60, operator.metrics_url))
                    theirs.append(sample(baseline.pid, elapsed / 60, None))
                    print(
                        f"{elapsed / 60:5.1f} min  operator {ours[-1].row()} | watch-only {theirs[-1].row()}"
                    )
                    next_sample += 60
                time.sleep(0.5)
            churn.restore()
            last = str(churn.version)
            harness.wait_until(
                lambda: harness.all_active(api, ns, total, customer_key_version=last), timeout=600
            )
            elapsed = time.monotonic() - started
            ours.append(sample(operator.popen.pid, elapsed / 60, operator.metrics_url))
            theirs.append(sample(baseline.pid, elapsed / 60, None))
        assert harness.key_check_values(api, ns) == kcvs, "an account key changed"
    report(args, total, churn.version - 1, ours, theirs)
    if args.trace_memory:
        growth(workdir / "memtrace")


def growth(folder: Path, top: int = 15) -> None:
    """The allocation sites that grew most from the snapshot after the first sweep to the last."""
    snapshots = sorted(folder.glob("*.snapshot"))
    if len(snapshots) < 3:
        print("too few memory snapshots to compare; run for longer")
        return
    first, last = (tracemalloc.Snapshot.load(str(path)) for path in (snapshots[1], snapshots[-1]))
    size = sum(stat.size for stat in last.statistics("filename"))
    print(f"\nPython allocations traced: {size / 2**20:.1f} MiB at {snapshots[-1].stem} min")
    print(f"grown most between minute {snapshots[1].stem} and minute {snapshots[-1].stem} (tracemalloc):")
    for stat in last.compare_to(first, "traceback")[:top]:
        frames = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in stat.traceback[:4])
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
