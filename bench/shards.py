"""One shard against two: the same N accounts reconciled by one release, then by two releases that
split the namespaces between them (chart value sharding.namespaceSelector; operator/vaop/sharding.py).

Both runs use the chart's RBAC (sharded) on one local control plane, in four namespaces: two with
N/2 SystemKey accounts each and two with N/2 CustomerKey accounts each (one identity and key per
namespace). One shard owns all four; of two shards each owns one of each kind. Measured per run:

1. provisioning all N SystemKey accounts, then all N CustomerKey accounts, to Active;
2. rotation: a new key version in both key namespaces, until all N CustomerKey accounts are
   re-wrapped;
3. CPU seconds used by the operator processes and by the apiserver and etcd in each phase.

On a 2-core machine the apiserver, etcd and the operators share two cores, so a second shard adds
contention, not capacity; the CPU split says where the time goes.

    .venv/bin/python -m bench.shards --accounts 2000
    .venv/bin/python -m bench.shards --accounts 10000
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client

from bench import harness
from vaopdev import cluster, environment

SHARD_LABEL = "videoanalyzer.io/shard"
# The chart as a sharded release renders it (its RBAC: namespaces, claim Leases); each process below
# gets its own selector.
CHART_VALUES = {
    "sharding.namespaceSelector.matchExpressions[0].key": SHARD_LABEL,
    "sharding.namespaceSelector.matchExpressions[0].operator": "Exists",
}
CHECK_INTERVAL = "30"


@dataclass
class Run:
    shards: int
    system_seconds: float = 0.0
    byok_seconds: float = 0.0
    rotation_seconds: float = 0.0
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)  # phase -> process -> seconds
    webhook_timeouts: int = 0  # creates refused because the webhook did not answer within 5 s


def _labelled(api: client.ApiClient, prefix: str, shard: str) -> str:
    ns = harness.namespace(api, prefix)
    client.CoreV1Api(api).patch_namespace(ns, {"metadata": {"labels": {SHARD_LABEL: shard}}})
    return ns


def _in_parallel(*steps: Callable[[], object]) -> None:
    threads = [threading.Thread(target=step) for step in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _operators(
    plane: cluster.ControlPlane, workdir: Path, run: int, shards: int
) -> list[environment.OperatorProcess]:
    identity = environment.operator_identity(plane)
    processes = []
    for i in range(shards):
        settings = {
            "VAOP_CHECK_INTERVAL": CHECK_INTERVAL,
            "VAOP_LEASE_NAME": f"shard-{run}-{i}",
            "VAOP_NAMESPACE_SELECTOR": json.dumps({"matchLabels": {SHARD_LABEL: f"{run}-{i}"}}),
        }
        if i > 0:  # one release serves the webhook and the data API
            settings |= {"VAOP_WEBHOOK_PORT": "0", "VAOP_DATA_API_PORT": "0"}
        processes.append(
            environment.OperatorProcess(identity, workdir / f"operator-{run}-{i}.log", settings=settings)
        )
    return processes


def measure_run(
    plane: cluster.ControlPlane, api: client.ApiClient, workdir: Path, *, run: int, shards: int, count: int
) -> Run:
    found = Run(shards)
    half = count // 2
    operators = _operators(plane, workdir, run, shards)
    for operator in operators:
        operator.start(timeout=300)
    try:
        shard_of = [f"{run}-{i % shards}" for i in range(2)]
        system = [_labelled(api, f"system-{run}", shard) for shard in shard_of]
        byok = [_labelled(api, f"byok-{run}", shard) for shard in shard_of]
        for ns in byok:
            harness.kubernetes_key_tenant(api, ns, identity="tenant")
            harness.put_key_version(api, ns, 1)
        pids = {f"operator-{i}": op.popen.pid for i, op in enumerate(operators) if op.popen is not None}
        pids |= {name: pid for name, pid in plane.pids().items() if name in ("kube-apiserver", "etcd")}

        def phase(name: str, *steps: Callable[[], object]) -> float:
            with harness.cpu_used(pids) as used:
                seconds = harness.timed(lambda: _in_parallel(*steps))
            found.cpu[name] = used
            return seconds

        def provision_system(ns: str) -> Callable[[], object]:
            def step() -> None:
                harness.create_system_key_accounts(api, ns, half)
                harness.watch_until(api, ns, half, harness.active)

            return step

        def provision_byok(ns: str) -> Callable[[], object]:
            def step() -> None:
                harness.create_customer_key_accounts(api, ns, half, identity="tenant")
                harness.watch_until(api, ns, half, harness.wrapped_by("1"))

            return step

        def rotate(ns: str) -> Callable[[], object]:
            def step() -> None:
                harness.put_key_version(api, ns, 2)
                harness.watch_until(api, ns, half, harness.wrapped_by("2"))

            return step

        found.system_seconds = phase("provisioning SystemKey", *map(provision_system, system))
        found.byok_seconds = phase("provisioning CustomerKey", *map(provision_byok, byok))
        found.rotation_seconds = phase("rotation", *map(rotate, byok))
        found.webhook_timeouts = sum(harness.WEBHOOK_TIMEOUTS[ns] for ns in system + byok)
    finally:
        for operator in operators:
            operator.stop()
    print(f"so far: {found}", flush=True)
    return found


def report(count: int, runs: list[Run]) -> None:
    one, two = runs
    print(f"accounts: {count} SystemKey, then {count} CustomerKey (RSA-2048), in 2+2 namespaces")
    print(f"{'':28}{'1 shard':>10}{'2 shards':>10}{'2/1':>7}")
    for title, attribute in (
        ("provisioning SystemKey", "system_seconds"),
        ("provisioning CustomerKey", "byok_seconds"),
        ("rotation", "rotation_seconds"),
    ):
        a, b = getattr(one, attribute), getattr(two, attribute)
        print(f"{title + ' (s)':28}{a:>10.1f}{b:>10.1f}{b / a:>7.2f}")
    print(
        f"creates refused by a webhook timeout (then made again): {one.webhook_timeouts} with 1 shard, "
        f"{two.webhook_timeouts} with 2"
    )
    for phase in one.cpu:
        pair = [_cpu_by_kind(run.cpu[phase]) for run in (one, two)]
        print(
            f"CPU s in {phase} (1 -> 2 shards): "
            + ", ".join(f"{kind} {pair[0][kind]:.1f} -> {pair[1][kind]:.1f}" for kind in pair[0])
        )


def _cpu_by_kind(used: dict[str, float]) -> dict[str, float]:
    kinds = {"operators": "operator", "apiserver": "kube-apiserver", "etcd": "etcd"}
    return {kind: sum(v for k, v in used.items() if k.startswith(prefix)) for kind, prefix in kinds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=2000)
    args = parser.parse_args()
    with harness.scratch() as workdir, cluster.ControlPlane() as plane:
        environment.helm_install(plane, values=CHART_VALUES)
        with environment.admin_api(plane) as api:
            runs = [
                measure_run(plane, api, workdir, run=run, shards=shards, count=args.accounts)
                for run, shards in enumerate((1, 2))
            ]
        report(args.accounts, runs)


if __name__ == "__main__":
    main()
