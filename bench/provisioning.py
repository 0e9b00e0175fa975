"""Provisioning N accounts, the operator against its baselines on an equal footing.

Each contender provisions N SystemKey accounts to Active in a namespace of its own, on the same
local control plane, in the order A-B-A: the operator, the three baselines, the operator again,
then the bare Secret floor again. After each run its accounts, Secrets, ServiceAccounts and Events
are deleted and gone before the next starts, so every contender meets a store holding the same
live objects; the operator's two runs bracket the baselines, and their spread shows what the
store's history (etcd revisions, compaction) changes on its own. Ratios are to the mean of the
operator's two runs. (``bench/scale.py`` measures the rest: memory, rotation, detection.)

With ``--fresh``, each contender gets a control plane of its own instead, new and empty (it starts
in seconds), in the same A-B-A order: nothing is cleared between runs, which at 10,000 accounts
would take longer than the runs (garbage collection deletes the account-key Secrets at about 20/s).

Contenders: the operator (the chart's RBAC); a Kopf operator making the writes any implementation
must make (``bench/writes_kopf_operator.py``: a Secret, a status patch, an Event per account); the
no-op Kopf operator and the no-op controller-runtime controller (status.state only); the floor of N
bare Secret creates and N updates (8 writers), first and last.

    .venv/bin/python -m bench.provisioning --accounts 1000
    .venv/bin/python -m bench.provisioning --accounts 10000 --fresh
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client

from bench import harness
from bench.scale import NOOP_KOPF, WEBHOOK, WRITES_KOPF
from vaop import labels
from vaopdev import binaries, cluster, environment

# The account-key Secrets go by garbage collection, at kube-controller-manager's client rate (20
# requests/s by default): about 500 s for 10,000 of them, and their Events too.
GONE_SECONDS_PER_OBJECT = 0.15


@dataclass
class Run:
    name: str
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)
    requests: collections.Counter[str] = field(default_factory=collections.Counter)  # --fresh: all users'
    profile: list[str] = field(default_factory=list)  # --profile: py-spy's top functions
    apiserver_profile: list[str] = field(default_factory=list)  # --profile: pprof's, its first 10 s


def provision(api: client.ApiClient, ns: str, count: int) -> float:
    def run() -> None:
        harness.create_system_key_accounts(api, ns, count)
        harness.watch_until(api, ns, count, harness.active)

    return harness.timed(run)


def clear(api: client.ApiClient, ns: str, count: int) -> None:
    """Everything a run left in ``ns``, deleted, and gone from the store before the next run.

    Not the namespace: deleting one needs every aggregated API answering (the operator's data API
    does not while it is stopped)."""
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    custom.delete_collection_namespaced_custom_object(
        "videoanalyzer.io", "v1alpha1", ns, "videoanalyzeraccounts"
    )
    # The account-key Secrets go with their accounts (garbage collection); the webhook refuses to
    # delete one directly, as it would lose the key.
    core.delete_collection_namespaced_secret(
        ns, label_selector=f"{labels.COMPONENT}!={labels.ACCOUNT_KEY_COMPONENT}"
    )
    core.delete_collection_namespaced_event(ns)
    core.delete_collection_namespaced_service_account(ns, field_selector="metadata.name!=default")

    def gone() -> bool:
        left = custom.list_namespaced_custom_object(
            "videoanalyzer.io", "v1alpha1", ns, "videoanalyzeraccounts", limit=1
        )["items"]
        left += core.list_namespaced_secret(ns, limit=1).items
        left += core.list_namespaced_event(ns, limit=1).items
        return not left

    harness.wait_until(gone, timeout=max(120.0, count * GONE_SECONDS_PER_OBJECT), interval=1.0)


Command = Callable[[str], list[str]]  # a baseline's command line, for its namespace


def timed_baseline(
    api: client.ApiClient,
    plane: cluster.ControlPlane,
    name: str,
    command: Command,
    count: int,
    *,
    clear_after: bool = True,
) -> Run:
    ns = harness.namespace(api, name.split(maxsplit=1)[0].lower().replace("-", ""))
    assert plane.admin_kubeconfig is not None
    with harness.process_running(command(ns), plane.admin_kubeconfig) as process:
        time.sleep(3)  # its watch is open
        with harness.cpu_used(harness.cpu_pids(plane, process.pid)) as cpu:
            seconds = provision(api, ns, count)
    if clear_after:
        clear(api, ns, count)
    return Run(name, seconds, cpu)


def _baselines() -> list[tuple[str, Command]]:
    """The baselines, in the order they run: each a name and its command line for a namespace."""
    noop_go = str(binaries.NOOP_CONTROLLER.ensure() / "noop-controller")
    kopf = [sys.executable, "-m", "kopf", "run", "--standalone"]
    return [
        ("same-writes Kopf", lambda ns: [*kopf, "--namespace", ns, str(WRITES_KOPF)]),
        ("no-op Kopf", lambda ns: [*kopf, "--namespace", ns, str(NOOP_KOPF)]),
        ("no-op controller-runtime", lambda ns: [noop_go, "--namespace", ns]),
    ]


def measure(count: int, workdir: Path) -> list[Run]:
    baselines = _baselines()
    runs: list[Run] = []
    settings = {"VAOP_CHECK_INTERVAL": "30"}
    with harness.environment_running(workdir, settings=settings) as (plane, api, operator):
        assert operator.popen is not None

        def floor(label: str) -> Run:
            ns = harness.namespace(api, "floor")
            run = Run(label, harness.raw_secret_writes(api, ns, count).total)
            clear(api, ns, count)
            return run

        runs.append(floor("floor (first)"))

        def operator_run(label: str) -> Run:
            assert operator.popen is not None
            ns = harness.namespace(api, "operator")
            with harness.cpu_used(harness.cpu_pids(plane, operator.popen.pid)) as cpu:
                seconds = provision(api, ns, count)
            clear(api, ns, count)
            return Run(label, seconds, cpu)

        runs.append(operator_run("operator (A1)"))
        print(f"so far: {runs}", flush=True)
        # While it is stopped its webhook (failurePolicy Fail) would refuse every account: the
        # baselines run without it, as a no-op controller would be deployed, and it comes back after.
        admission = client.AdmissionregistrationV1Api(api)
        webhook = admission.read_validating_webhook_configuration(WEBHOOK)
        operator.stop()
        admission.delete_validating_webhook_configuration(WEBHOOK)
        for name, command in baselines:
            runs.append(timed_baseline(api, plane, name, command, count))
            print(f"so far: {runs}", flush=True)
        webhook.metadata = client.V1ObjectMeta(name=WEBHOOK, labels=webhook.metadata.labels)
        admission.create_validating_webhook_configuration(webhook)
        operator.start(timeout=600)
        runs.append(operator_run("operator (A2)"))
        runs.append(floor("floor (last)"))
    return runs


def measure_fresh(count: int, workdir: Path, *, profile: bool = False) -> list[Run]:
    """The same contenders and order, each on a new control plane of its own, with every request
    the apiserver served during each run counted (the store is the run's alone)."""
    baselines = _baselines()
    runs: list[Run] = []

    def floor(label: str) -> None:
        with cluster.ControlPlane() as plane, environment.admin_api(plane) as api:
            since = time.time()
            run = Run(label, harness.raw_secret_writes(api, harness.namespace(api, "floor"), count).total)
            run.requests = harness.request_counts(plane, since=since)
            runs.append(run)

    def operator_run(label: str, *, profiled: bool) -> None:
        settings = {"VAOP_CHECK_INTERVAL": "30"}
        running = harness.environment_running(workdir, settings=settings, profiling=profiled)
        with running as (plane, api, operator):
            assert operator.popen is not None
            ns = harness.namespace(api, "operator")
            since = time.time()
            with (
                harness.cpu_used(harness.cpu_pids(plane, operator.popen.pid)) as cpu,
                harness.profiled(operator.popen.pid, enabled=profiled) as top,
                harness.apiserver_profiled(
                    plane, enabled=profiled, keep_as=harness.kept_profile(label)
                ) as apiserver_top,
            ):
                seconds = provision(api, ns, count)
            runs.append(
                Run(label, seconds, cpu, harness.request_counts(plane, since=since), top, apiserver_top)
            )

    def baseline(name: str, command: Command, *, profiled: bool = False) -> None:
        with cluster.ControlPlane(profiling=profiled) as plane:
            environment.helm_install(plane)  # the CRDs, as the operator's runs have them
            with environment.admin_api(plane) as api:
                client.AdmissionregistrationV1Api(api).delete_validating_webhook_configuration(WEBHOOK)
                since = time.time()
                kept = harness.kept_profile(name)
                with harness.apiserver_profiled(plane, enabled=profiled, keep_as=kept) as apiserver_top:
                    run = timed_baseline(api, plane, name, command, count, clear_after=False)
                run.requests = harness.request_counts(plane, since=since)
                run.apiserver_profile = apiserver_top
                runs.append(run)

    floor("floor (first)")
    operator_run("operator (A1)", profiled=profile)
    for name, command in baselines:
        baseline(name, command, profiled=profile and name.startswith("same-writes"))
        print(f"so far: {[(r.name, round(r.seconds, 1)) for r in runs]}", flush=True)
    operator_run("operator (A2)", profiled=False)
    floor("floor (last)")
    return runs


def report(count: int, runs: list[Run], *, fresh: bool) -> None:
    operator = statistics.mean(r.seconds for r in runs if r.name.startswith("operator"))
    store = "a new control plane each" if fresh else "an equal store each"
    print(f"provisioning {count} SystemKey accounts to Active, in run order (A-B-A, {store}):")
    for run in runs:
        ratio = f"operator {operator / run.seconds:4.2f}x this" if not run.name.startswith("operator") else ""
        cpu = ", ".join(f"{name} {seconds:5.1f}" for name, seconds in run.cpu.items())
        print(f"  {run.name:26s} {run.seconds:7.1f} s  {ratio:24s} {f'CPU: {cpu}' if cpu else ''}")
    print(f"  operator, mean of A1 and A2: {operator:.1f} s ({count / operator:.1f}/s)")
    for run in runs:
        if run.requests:
            significant = collections.Counter({k: n for k, n in run.requests.items() if n >= count / 100})
            harness.print_requests(
                f"requests the apiserver served during {run.name} (every user)", significant, count
            )
        if run.profile:
            print(f"where the operator spent its time during {run.name} (py-spy):")
            print("\n".join(f"  {line}" for line in run.profile))
        if run.apiserver_profile:
            print(f"where the kube-apiserver spent its time in the first 10 s of {run.name} (pprof):")
            print("\n".join(f"  {line}" for line in run.apiserver_profile))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--fresh", action="store_true", help="a new control plane for each contender")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="with --fresh: py-spy on the operator's A1 (which it slows), pprof on the apiserver",
    )
    args = parser.parse_args()
    with harness.scratch() as workdir:
        if args.fresh:
            runs = measure_fresh(args.accounts, workdir, profile=args.profile)
        else:
            runs = measure(args.accounts, workdir)
    report(args.accounts, runs, fresh=args.fresh)


if __name__ == "__main__":
    main()
