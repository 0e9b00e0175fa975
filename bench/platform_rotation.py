"""Rotation of both platform keys under N SystemKey accounts, beside the floor of the same writes.

Timed, each from `vaop platform rotate` to the last envelope moved (the leader notices a rotation
within its check interval, 2 s here):
- the infrastructure key: every envelope's outer layer resealed (one Secret replace per account, no
  vault call);
- the system key: every SystemKey account's key re-wrapped (one Secret replace and one status patch
  per account: ``wrappedBy.keyVersion`` changes).

Floor, the same run and apiserver, by 8 writers: N bare Secret replaces of envelope-sized data; and
those plus N bare status patches of the accounts (the operator stopped meanwhile).

    .venv/bin/python -m bench.platform_rotation --accounts 1000
    .venv/bin/python -m bench.platform_rotation --accounts 1000 --kills 15

With ``--kills N`` a third rotation of both keys follows, the operator SIGKILLed N times while it moves
the envelopes: every account must end on the new versions with the key it always had.
"""

from __future__ import annotations

import argparse
import base64
import subprocess
import sys
import time
from typing import Any

from kubernetes import client

from bench import harness
from vaop import labels, platformkeys
from vaop.crypto import envelope
from vaopdev import cluster, environment
from vaopdev import kills as vaopdev_kills


def _envelopes(api: client.ApiClient, ns: str) -> list[envelope.Envelope]:
    core = client.CoreV1Api(api)
    found: list[envelope.Envelope] = []
    token = None
    while True:
        page = core.list_namespaced_secret(
            ns, label_selector=labels.ACCOUNT_KEY_SELECTOR, limit=500, _continue=token
        )
        found += [envelope.decode(base64.b64decode(s.data[labels.ENVELOPE_DATA_KEY])) for s in page.items]
        token = page.metadata._continue
        if not token:
            return found


def _on(api: client.ApiClient, ns: str, count: int, key: str, version: str) -> bool:
    used = platformkeys.usage(_envelopes(api, ns))
    return used[(key, version)] == count


def _rotate(plane: cluster.ControlPlane, key: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "vaop", "platform", "rotate", key, "-n", environment.OPERATOR_NAMESPACE],
        env={"KUBECONFIG": str(plane.admin_kubeconfig)},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split(" version ")[1].split()[0]


def _secret_floor(api: client.ApiClient, count: int) -> float:
    """N bare replaces of envelope-sized Secrets (made first, untimed), as the operator replaces."""
    ns = harness.namespace(api, "floor")
    core = client.CoreV1Api(api)
    payload = {labels.ENVELOPE_DATA_KEY: base64.b64encode(b"x" * 900).decode()}
    harness.parallel(
        list(range(count)),
        lambda i: core.create_namespaced_secret(
            ns, client.V1Secret(metadata=client.V1ObjectMeta(name=f"floor-{i}"), data=payload)
        ),
    )
    read = {s.metadata.name: s for s in core.list_namespaced_secret(ns).items}

    def replace(i: int) -> None:
        secret = read[f"floor-{i}"]
        secret.data = {labels.ENVELOPE_DATA_KEY: base64.b64encode(b"y" * 900).decode()}
        core.replace_namespaced_secret(secret.metadata.name, ns, secret)

    return harness.timed(lambda: harness.parallel(list(range(count)), replace))


def _phase(
    plane: cluster.ControlPlane,
    api: client.ApiClient,
    operator: environment.OperatorProcess,
    ns: str,
    *,
    count: int,
    key: str,
) -> dict[str, Any]:
    since = time.time()
    started = time.perf_counter()
    assert operator.popen is not None
    pids = {**plane.pids(), "operator": operator.popen.pid}
    with harness.cpu_used(pids) as cpu:
        version = _rotate(plane, key)
        harness.wait_until(lambda: _on(api, ns, count, key, version), timeout=3600, interval=1)
        if key == platformkeys.SYSTEM:
            harness.wait_until(
                lambda: harness.all_wrapped_by(api, ns, count, version), timeout=600, interval=1
            )
    seconds = time.perf_counter() - started
    time.sleep(2)  # the last writes' audit entries
    requests = harness.request_counts(plane, since=since, users={harness.operator_user()})
    return {"seconds": seconds, "cpu": dict(cpu), "requests": requests, "version": version}


def _killed_rotation(
    plane: cluster.ControlPlane,
    api: client.ApiClient,
    operator: environment.OperatorProcess,
    ns: str,
    *,
    kills: int,
) -> tuple[int, float]:
    """Both keys rotated, the operator killed ``kills`` times while it moves the envelopes; how many
    kills found work left, and the seconds until every envelope was on the new versions."""
    started = time.perf_counter()
    infra_new, system_new = _rotate(plane, platformkeys.INFRASTRUCTURE), _rotate(plane, platformkeys.SYSTEM)

    def pending() -> int:
        return sum(
            s.outer_key_version != infra_new or s.inner.key_version != system_new for s in _envelopes(api, ns)
        )

    hit = vaopdev_kills.Killer(operator, seed=7).kill_during(kills, pending, pause=(0.5, 3.0))
    harness.wait_until(lambda: pending() == 0, timeout=3600, interval=2)
    return hit, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=0, help="SIGKILLs during a third rotation")
    args = parser.parse_args()
    count = args.accounts
    settings = {"VAOP_CHECK_INTERVAL": "2"}
    with (
        harness.scratch() as workdir,
        harness.environment_running(workdir, settings=settings) as (plane, api, operator),
    ):
        ns = harness.namespace(api, "rotation")
        harness.create_system_key_accounts(api, ns, count)
        harness.wait_until(lambda: harness.all_active(api, ns, count), timeout=3600, interval=2)
        kcvs = harness.key_check_values(api, ns)
        operator.stop()
        secret_floor = _secret_floor(api, count)
        status_floor = harness.raw_status_patches(api, ns)
        operator.start()
        system_now = max(v for (k, v) in platformkeys.usage(_envelopes(api, ns)) if k == platformkeys.SYSTEM)
        harness.wait_until(
            lambda: harness.all_wrapped_by(api, ns, count, system_now), timeout=600, interval=2
        )
        infra = _phase(plane, api, operator, ns, count=count, key=platformkeys.INFRASTRUCTURE)
        system = _phase(plane, api, operator, ns, count=count, key=platformkeys.SYSTEM)
        assert harness.key_check_values(api, ns) == kcvs  # the same account keys throughout
        killed = _killed_rotation(plane, api, operator, ns, kills=args.kills) if args.kills else None
        assert harness.key_check_values(api, ns) == kcvs
    print(f"accounts: {count} SystemKey; the leader's check interval 2 s")
    print(
        f"floor: {count} bare Secret replaces: {secret_floor:.1f} s; "
        f"and {count} status patches: {status_floor:.1f} s"
    )
    if killed is not None:
        hit, seconds = killed
        print(
            f"both keys rotated under {args.kills} SIGKILLs ({hit} while envelopes were moving): every "
            f"account on the new versions, with its own key, {seconds:.1f} s after the rotation"
        )
    for name, phase, floor in (
        ("infrastructure key (outer layers resealed)", infra, secret_floor),
        ("system key (account keys re-wrapped)", system, secret_floor + status_floor),
    ):
        seconds = phase["seconds"]
        print(
            f"{name}, to version {phase['version']}: {seconds:.1f} s ({count / seconds:.1f} accounts/s), "
            f"{seconds / floor:.2f}x its floor ({floor:.1f} s)"
        )
        harness.print_requests("  apiserver requests of the operator", phase["requests"], count)
        cpu = phase["cpu"]
        print(
            "  CPU seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda i: -i[1]))
        )


if __name__ == "__main__":
    main()
