"""How long N new SystemKey accounts take to become Ready, beside the floor of the same API writes.

Floor, same run, same apiserver: N bare Secret creates + N bare Secret updates (what the operator
must at least write per account: the account-key Secret and the status), 8 writers in parallel.

    .venv/bin/python bench/accounts_ready.py --accounts 200
"""

from __future__ import annotations

import argparse

from kubernetes import client

from bench import harness
from vaop import models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=200)
    args = parser.parse_args()
    count = args.accounts
    with harness.scratch() as workdir, harness.environment_running(workdir) as (_, api, _operator):
        floor = harness.raw_secret_writes(api, harness.namespace(api, "floor"), count)
        ns = harness.namespace(api, "ready")
        custom = client.CustomObjectsApi(api)

        def create(i: int) -> None:
            body = {
                "apiVersion": models.API_VERSION,
                "kind": "VideoAnalyzerAccount",
                "metadata": {"name": f"acct-{i:05d}"},
                "spec": {"region": "westeurope"},
            }
            custom.create_namespaced_custom_object(
                models.GROUP, models.VERSION, ns, "videoanalyzeraccounts", body
            )

        def all_ready() -> bool:
            items = harness.accounts(api, ns)
            return len(items) == count and all(i.get("status", {}).get("state") == "Active" for i in items)

        def provision() -> None:
            harness.parallel(list(range(count)), create)
            harness.wait_until(all_ready, timeout=1800)

        elapsed = harness.timed(provision)
    print(f"accounts: {count}")
    print(f"all Ready (create to last Active): {elapsed:.1f} s  ({count / elapsed:.1f} accounts/s)")
    print(f"floor, {count} bare Secret creates + {count} updates: {floor:.1f} s")
    print(f"ratio to floor: {elapsed / floor:.1f}x")


if __name__ == "__main__":
    main()
