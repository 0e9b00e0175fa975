"""The operator at N accounts, beside baselines run in the same session on the same apiserver.

Baselines: (a) a no-op Kopf operator (bench/noop_kopf_operator.py) and (b) a no-op controller-runtime
controller (tools/noop-controller), each only setting status.state to Active; (c) a Kopf operator
making the writes any implementation must make per account (bench/writes_kopf_operator.py: a
Secret, a status patch, an Event); (d) the bare floor of N Secret creates and N updates (8 writers).
The operator runs with the chart's RBAC.

Measured, in this order:
1. provisioning N SystemKey accounts, then N CustomerKey accounts (one identity and key), to Active,
   the writes each took, and the CPU the operator, the apiserver and etcd used for the SystemKey
   accounts (beside the baselines' in the same phase);
2. resident memory at rest with those objects, and at its peak during the rotation;
3. rotation: a new key version, until all N CustomerKey accounts are re-wrapped, beside the floor of
   N bare RSA unwraps and wraps plus N bare Secret updates; when each account was re-wrapped;
4. detection: access revoked (the RoleBinding deleted: only the timed check can see it), until every
   account is KeyInaccessible, and restored, until every one is Active again; when each one moved,
   and the writes per account each took;
5. steady-state load with nothing changing: apiserver requests per minute by verb and resource
   (audit log), over --quiet-minutes;
6. a restart of the operator: the writes it makes while it re-checks every account (there should be
   none: everything is already right);
7. the baselines, each provisioning N accounts in a namespace of its own (the operator stopped and
   its admission webhook removed); their memory at rest with N and with 2N accounts, and at its
   peak while N of those have their status patched (the watch traffic of the rotation).

    .venv/bin/python -m bench.scale --accounts 1000
    .venv/bin/python -m bench.scale --accounts 10000 --quiet-minutes 2
    .venv/bin/python -m bench.scale --accounts 1000 --profile   # py-spy while it provisions
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from bench import harness, rotation, soak
from vaopdev import binaries, cluster

NOOP_KOPF = Path(__file__).with_name("noop_kopf_operator.py")
WRITES_KOPF = Path(__file__).with_name("writes_kopf_operator.py")
WRITES = ("create", "update", "patch", "delete", "deletecollection")
CHECK_INTERVAL = 30.0  # the chart's default
WEBHOOK = "video-analyzer-operator"  # the chart's ValidatingWebhookConfiguration
AFTER_RESTART = 60.0  # every account re-checked, and a sweep of the key checks


@dataclass
class Baseline:
    seconds: float = 0.0  # provisioning N accounts to Active
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds while provisioning, by process
    rss: float = 0.0  # at rest with N accounts
    rss_double: float = 0.0  # at rest with 2N accounts
    rss_changes_peak: float = 0.0  # peak while N of them have their status patched


def baseline(
    api: client.ApiClient, command: list[str], plane: cluster.ControlPlane, ns: str, count: int
) -> Baseline:
    """A baseline controller provisioning ``count`` accounts, then holding twice as many (as the
    operator does when it rotates), and its peak memory while ``count`` of them change status (the
    watch traffic of a rotation, which the no-op controller only receives)."""
    found = Baseline()
    assert plane.admin_kubeconfig is not None
    with harness.process_running(command, plane.admin_kubeconfig) as process:
        time.sleep(3)  # its watch is open

        def provision() -> None:
            harness.create_system_key_accounts(api, ns, count)
            harness.watch_until(api, ns, count, harness.active)

        with harness.cpu_used(harness.cpu_pids(plane, process.pid)) as found.cpu:
            found.seconds = harness.timed(provision)
        time.sleep(5)
        found.rss = soak.sample(process.pid, 0, None).rss_mib
        harness.create_system_key_accounts(api, ns, count, first=count)
        harness.watch_until(api, ns, 2 * count, harness.active)
        time.sleep(5)
        found.rss_double = soak.sample(process.pid, 0, None).rss_mib
        with peak_rss(process.pid) as peak:
            harness.raw_status_patches(api, ns, count=count)
            time.sleep(5)  # the last events are delivered
        found.rss_changes_peak = max(peak)
    return found


@contextlib.contextmanager
def peak_rss(pid: int) -> Iterator[list[float]]:
    """RSS samples (MiB) of ``pid`` every half second while the block runs."""
    samples = [soak.sample(pid, 0, None).rss_mib]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            samples.append(soak.sample(pid, 0, None).rss_mib)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield samples
    finally:
        done.set()
        sampler.join()


def in_state(state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda account: (account.get("status") or {}).get("state") == state


def _wrapped_at(account: dict[str, Any]) -> str | None:
    return ((account.get("status") or {}).get("accountKey") or {}).get("wrappedAt")


def _changed(condition: str) -> Callable[[dict[str, Any]], str | None]:
    def transition(account: dict[str, Any]) -> str | None:
        for found in (account.get("status") or {}).get("conditions") or ():
            if found.get("type") == condition:
                return str(found.get("lastTransitionTime"))
        return None

    return transition


def since(
    started: float, accounts: list[dict[str, Any]], when: Callable[[dict[str, Any]], str | None]
) -> list[float]:
    """Seconds from ``started`` to each account's time (RFC 3339, whole seconds), sorted."""
    times = (when(a) for a in accounts)
    return sorted(datetime.datetime.fromisoformat(t).timestamp() - started for t in times if t is not None)


def distribution(seconds: list[float]) -> str:
    if not seconds:
        return "none"

    def at(quantile: float) -> float:
        return seconds[min(len(seconds) - 1, int(quantile * len(seconds)))]

    return f"p50 {at(0.5):5.1f} s, p90 {at(0.9):5.1f} s, p99 {at(0.99):5.1f} s, max {seconds[-1]:5.1f} s"


def writes(counts: dict[str, int]) -> dict[str, int]:
    """The requests that change stored objects (reviews and tokens are answers, not writes)."""
    answers = ("reviews", "/token")
    return {
        what: n
        for what, n in counts.items()
        if what.split()[0] in WRITES and not what.split()[1].endswith(answers)
    }


@dataclass
class Figures:
    floor: float = 0.0
    secret_floor: harness.SecretFloor = field(default_factory=lambda: harness.SecretFloor(0.0, 0.0))
    system_seconds: float = 0.0
    byok_seconds: float = 0.0
    system_cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds until Active, by process
    system_profile: list[str] = field(default_factory=list)  # py-spy's top entries (--profile)
    system_requests: collections.Counter[str] = field(default_factory=collections.Counter)
    byok_requests: collections.Counter[str] = field(default_factory=collections.Counter)
    rss_system: float = 0.0
    rss_rest: float = 0.0
    rss_rotation_peak: float = 0.0
    rotation_seconds: float = 0.0
    rotation_floor: float = 0.0
    status_floor: float = 0.0  # N bare status patches: the re-wrap's second write
    rewrapped_after: list[float] = field(default_factory=list)
    locked_after: list[float] = field(default_factory=list)
    recovered_after: list[float] = field(default_factory=list)
    lock_requests: collections.Counter[str] = field(default_factory=collections.Counter)
    recovery_requests: collections.Counter[str] = field(default_factory=collections.Counter)
    rss_restarted: float = 0.0
    rss_restart_peak: float = 0.0
    quiet: collections.Counter[str] = field(default_factory=collections.Counter)
    restart_seconds: float = 0.0
    restart: collections.Counter[str] = field(default_factory=collections.Counter)
    kopf: Baseline = field(default_factory=Baseline)
    writes_kopf: Baseline = field(default_factory=Baseline)
    go: Baseline = field(default_factory=Baseline)

    def progress(self) -> str:
        """The figures so far without the per-account lists (a long run that fails later keeps them)."""
        return ", ".join(f"{k}={v}" for k, v in vars(self).items() if not isinstance(v, list))


def rotate_and_revoke(
    plane: cluster.ControlPlane, api: client.ApiClient, byok_ns: str, count: int, *, pid: int, found: Figures
) -> None:
    """A new key version, then access revoked and restored: how long, when each account moved, and
    the requests the operator and the tenant identity made to lock and to recover them."""
    users = {harness.operator_user(), f"system:serviceaccount:{byok_ns}:tenant"}
    started = time.time()
    with peak_rss(pid) as peak:
        harness.put_key_version(api, byok_ns, 2)
        harness.watch_until(api, byok_ns, count, harness.wrapped_by("2"))
    found.rotation_seconds = time.time() - started
    found.rss_rotation_peak = max(peak)
    found.rotation_floor = rotation.rsa_floor(count, 2048) + found.secret_floor.updates
    found.rewrapped_after = since(started, harness.accounts(api, byok_ns), _wrapped_at)

    started = time.time()
    harness.revoke_keys(api, byok_ns)
    harness.watch_until(api, byok_ns, count, in_state("KeyInaccessible"))
    time.sleep(2)  # the last writes' audit entries
    found.lock_requests = harness.request_counts(plane, since=started, users=users)
    found.locked_after = since(started, harness.accounts(api, byok_ns), _changed("KeyInaccessible"))
    started = time.time()
    harness.grant_keys(api, byok_ns, identity="tenant")
    harness.watch_until(api, byok_ns, count, harness.active)
    time.sleep(2)
    found.recovery_requests = harness.request_counts(plane, since=started, users=users)
    found.recovered_after = since(started, harness.accounts(api, byok_ns), _changed("Ready"))


def provision(
    plane: cluster.ControlPlane, api: client.ApiClient, count: int, *, pid: int, found: Figures, profile: bool
) -> str:
    """N SystemKey accounts, then N CustomerKey accounts, to Active: how long, the requests they took
    and the memory after. The CustomerKey accounts' namespace."""
    system_ns = harness.namespace(api, "system")

    def provision_system() -> None:
        harness.create_system_key_accounts(api, system_ns, count)
        harness.watch_until(api, system_ns, count, harness.active)

    started = time.time()
    with (
        harness.profiled(pid, enabled=profile) as found.system_profile,
        harness.cpu_used(harness.cpu_pids(plane, pid)) as found.system_cpu,
    ):
        found.system_seconds = harness.timed(provision_system)
    time.sleep(2)  # the last writes' audit entries
    found.system_requests = harness.request_counts(plane, since=started, users={harness.operator_user()})
    found.rss_system = soak.sample(pid, 0, None).rss_mib
    print(f"so far: {found.progress()}", flush=True)

    byok_ns = harness.namespace(api, "byok")
    harness.kubernetes_key_tenant(api, byok_ns, identity="tenant")
    harness.put_key_version(api, byok_ns, 1)

    def provision_byok() -> None:
        harness.create_customer_key_accounts(api, byok_ns, count, identity="tenant")
        harness.watch_until(api, byok_ns, count, harness.wrapped_by("1"))

    started = time.time()
    found.byok_seconds = harness.timed(provision_byok)
    time.sleep(5)
    byok_users = {harness.operator_user(), f"system:serviceaccount:{byok_ns}:tenant"}
    found.byok_requests = harness.request_counts(plane, since=started, users=byok_users)
    found.rss_rest = soak.sample(pid, 0, None).rss_mib
    print(f"so far: {found.progress()}", flush=True)
    return byok_ns


def measure(count: int, quiet_minutes: float, workdir: Path, *, profile: bool) -> Figures:
    noop_go = binaries.NOOP_CONTROLLER.ensure() / "noop-controller"
    settings = {"VAOP_CHECK_INTERVAL": str(CHECK_INTERVAL)}
    found = Figures()
    with harness.environment_running(workdir, settings=settings) as (plane, api, operator):
        assert operator.popen is not None and plane.admin_kubeconfig is not None
        found.secret_floor = harness.raw_secret_writes(api, harness.namespace(api, "floor"), count)
        found.floor = found.secret_floor.total

        byok_ns = provision(plane, api, count, pid=operator.popen.pid, found=found, profile=profile)

        rotate_and_revoke(plane, api, byok_ns, count, pid=operator.popen.pid, found=found)
        print(f"so far: {found.progress()}", flush=True)

        users = {harness.operator_user(), f"system:serviceaccount:{byok_ns}:tenant"}
        time.sleep(CHECK_INTERVAL)  # the last writes of the recovery are over
        quiet_from = time.time()
        time.sleep(quiet_minutes * 60)
        found.quiet = harness.request_counts(plane, since=quiet_from, users=users)
        print(f"so far: {found.progress()}", flush=True)

        operator.stop()
        restarted = time.time()
        found.restart_seconds = harness.timed(lambda: operator.start(timeout=3600))
        time.sleep(AFTER_RESTART)
        found.restart = harness.request_counts(plane, since=restarted, users=users)
        found.rss_restarted = soak.sample(operator.popen.pid, 0, None).rss_mib
        found.rss_restart_peak = soak.high_water_mib(operator.popen.pid)
        print(f"so far: {found.progress()}", flush=True)
        operator.stop()
        found.status_floor = harness.raw_status_patches(api, byok_ns)
        # Its webhook (failurePolicy Fail) would refuse every account while no replica answers: the
        # baselines run without it, as a no-op controller would be deployed.
        client.AdmissionregistrationV1Api(api).delete_validating_webhook_configuration(WEBHOOK)

        kopf_ns = harness.namespace(api, "noop-kopf")
        kopf = [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", kopf_ns, str(NOOP_KOPF)]
        found.kopf = baseline(api, kopf, plane, kopf_ns, count)
        writes_ns = harness.namespace(api, "writes-kopf")
        writes_kopf = [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", writes_ns]
        found.writes_kopf = baseline(api, [*writes_kopf, str(WRITES_KOPF)], plane, writes_ns, count)
        go_ns = harness.namespace(api, "noop-go")
        go = [str(noop_go), "--namespace", go_ns]
        found.go = baseline(api, go, plane, go_ns, count)
    return found


def report(count: int, quiet_minutes: float, f: Figures) -> None:
    print(f"accounts: {count} SystemKey, then {count} CustomerKey (RSA-2048, one identity and key)")
    print("provisioning to Active:")
    print(f"  floor, {count} bare Secret creates + {count} updates: {f.floor:7.1f} s")
    print(f"  no-op Kopf operator:                 {f.kopf.seconds:7.1f} s")
    print(f"  Kopf making the same writes:         {f.writes_kopf.seconds:7.1f} s  (Secret, status, Event)")
    print(f"  no-op controller-runtime controller: {f.go.seconds:7.1f} s")
    for label, seconds in (("SystemKey", f.system_seconds), ("CustomerKey", f.byok_seconds)):
        print(
            f"  operator, {label:11s}: {seconds:7.1f} s ({count / seconds:5.1f}/s)  "
            f"{seconds / f.kopf.seconds:4.2f}x no-op Kopf, "
            f"{seconds / f.writes_kopf.seconds:4.2f}x same-writes Kopf, "
            f"{seconds / f.go.seconds:4.2f}x controller-runtime, "
            f"{seconds / f.floor:4.2f}x floor"
        )
    print(f"  CPU seconds until Active ({count} SystemKey accounts for the operator):")
    for label, cpu in (
        ("operator", f.system_cpu),
        ("no-op Kopf", f.kopf.cpu),
        ("same-writes Kopf", f.writes_kopf.cpu),
        ("controller-runtime", f.go.cpu),
    ):
        print(f"    {label:18s} " + ", ".join(f"{name} {seconds:5.1f}" for name, seconds in cpu.items()))
    if f.system_profile:
        print("  profile of the operator while it provisioned the SystemKey accounts (py-spy):")
        print("\n".join(f"    {line}" for line in f.system_profile))
    for label, counts in (("SystemKey", f.system_requests), ("CustomerKey", f.byok_requests)):
        made = writes(counts)
        per_account = sum(made.values()) / count
        print(f"  writes to provision the {label} accounts: {per_account:.2f} per account: {made}")
    print(
        f"rotation of {count} CustomerKey accounts: {f.rotation_seconds:.1f} s "
        f"({count / f.rotation_seconds:.1f}/s); floor (bare RSA unwrap+wrap and Secret updates) "
        f"{f.rotation_floor:.1f} s: {f.rotation_seconds / f.rotation_floor:.2f}x; adding the second "
        f"write a re-wrap must make ({count} bare status patches, {f.status_floor:.1f} s): "
        f"{f.rotation_seconds / (f.rotation_floor + f.status_floor):.2f}x"
    )
    print(f"  re-wrapped after the new version appeared: {distribution(f.rewrapped_after)}")
    print(f"detection, check interval {CHECK_INTERVAL:g} s (whole seconds, from the accounts' status):")
    print(f"  access revoked -> KeyInaccessible: {distribution(f.locked_after)}")
    print(f"  access restored -> Active:         {distribution(f.recovered_after)}")
    for phase, counts in (("lock", f.lock_requests), ("recover", f.recovery_requests)):
        made = writes(counts)
        print(f"  writes to {phase} them: {sum(made.values()) / count:.2f} per account: {made or 'none'}")
        harness.print_requests(f"  all requests to {phase} them", counts, count)
    print("resident memory (MiB); ratios to the no-op Kopf operator holding the same accounts:")
    rows = (
        (f"{count} accounts at rest", f.rss_system, f.kopf.rss, f.go.rss),
        (f"{2 * count} accounts at rest", f.rss_rest, f.kopf.rss_double, f.go.rss_double),
        (
            f"{2 * count} accounts, peak while {count} change",
            f.rss_rotation_peak,
            f.kopf.rss_changes_peak,
            f.go.rss_changes_peak,
        ),
    )
    print(f"  {'':42s} {'operator':>9s} {'no-op Kopf':>11s} {'controller-runtime':>19s}")
    for label, ours, kopf, go in rows:
        print(f"  {label:42s} {ours:9.1f} {kopf:11.1f} {go:19.1f}   {ours / kopf:4.2f}x")
    print("  (the operator's changes are its rotation: a Secret update and a status patch per account;")
    print("   the baselines' are bare status patches of as many of their accounts)")
    print(
        f"  operator, {2 * count} accounts, a restart: peak {f.rss_restart_peak:7.1f}, "
        f"{AFTER_RESTART:.0f} s later {f.rss_restarted:7.1f}"
    )
    title = f"steady state, {quiet_minutes:g} min with nothing changing (check interval {CHECK_INTERVAL:g} s)"
    harness.print_requests(title, f.quiet, 2 * count)
    per_minute = sum(f.quiet.values()) / quiet_minutes
    print(f"  = {per_minute:.1f} requests/min for {2 * count} accounts, one (identity, key) pair")
    made = writes(f.restart)
    print(f"restart: ready in {f.restart_seconds:.1f} s; writes in the {AFTER_RESTART:.0f} s after it:")
    print(f"  {sum(made.values())} writes: {made or 'none'}")
    harness.print_requests("restart: all requests", f.restart, 2 * count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--quiet-minutes", type=float, default=2.0)
    parser.add_argument(
        "--profile", action="store_true", help="sample the operator with py-spy while it provisions"
    )
    args = parser.parse_args()
    with harness.scratch() as workdir:
        figures = measure(args.accounts, args.quiet_minutes, workdir, profile=args.profile)
    report(args.accounts, args.quiet_minutes, figures)


if __name__ == "__main__":
    main()
