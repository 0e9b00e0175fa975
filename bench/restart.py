"""A restart of the operator with N accounts that are all right: how long until it is ready (its
indices complete, bench.scale's step 6 on its own), its memory before, at its peak and after, and
the writes it makes after it (none should).

    .venv/bin/python -m bench.restart --accounts 20000
"""

from __future__ import annotations

import argparse
import time

from bench import harness, scale, soak

SETTLE = 60.0  # every account re-checked after the restart


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=5000)
    args = parser.parse_args()
    with (
        harness.scratch() as workdir,
        harness.environment_running(workdir, settings={"VAOP_CHECK_INTERVAL": str(scale.CHECK_INTERVAL)}) as (
            plane,
            api,
            operator,
        ),
    ):
        ns = harness.namespace(api, "restart")

        def provision() -> None:
            harness.create_system_key_accounts(api, ns, args.accounts)
            harness.watch_until(api, ns, args.accounts, harness.active)

        provisioned = harness.timed(provision)
        print(f"{args.accounts} SystemKey accounts to Active: {provisioned:.1f} s", flush=True)
        assert operator.popen is not None
        time.sleep(5)
        before = soak.sample(operator.popen.pid, 0, None).rss_mib
        operator.stop()
        restarted = time.time()
        ready = harness.timed(lambda: operator.start(timeout=3600))
        assert operator.popen is not None
        rss = soak.sample(operator.popen.pid, 0, None).rss_mib
        time.sleep(SETTLE)
        after = soak.sample(operator.popen.pid, 0, None).rss_mib
        counts = harness.request_counts(plane, since=restarted, users={harness.operator_user()})
        print(f"restart: ready in {ready:.1f} s")
        print(
            f"RSS (MiB): before the restart {before:.1f}; at ready {rss:.1f}; peak (VmHWM) "
            f"{soak.high_water_mib(operator.popen.pid):.1f}; {SETTLE:.0f} s later {after:.1f}"
        )
        print(f"writes in the {SETTLE:.0f} s after it: {scale.writes(counts) or 'none'}")
        harness.print_requests("restart: all requests", counts, args.accounts)


if __name__ == "__main__":
    main()
