"""How long the data API stays unavailable after the operator comes back from an outage.

The operator is killed; once the aggregator has marked the APIService unavailable, the outage goes
on for a while (the aggregator backs off its failed checks), then the operator is started again.
Measured: the time from the start to the operator being ready, and to the apiserver serving
data.videoanalyzer.io again. The baseline is the first figure: the data API cannot be served before
the operator is. Local control plane: the APIService points at a loopback (ExternalName) Service,
whose endpoints do not change when the operator comes back; on a cluster, a new pod's endpoints
prompt the aggregator too.

    .venv/bin/python -m bench.data_api_restart
"""

from __future__ import annotations

import argparse
import time

from kubernetes import client

from bench import harness
from vaop.dataapi import lifecycle
from vaopdev import environment

API_SERVICE = "v1alpha1.data.videoanalyzer.io"


def _available(api: client.ApiClient) -> bool:
    return lifecycle.is_available(client.ApiregistrationV1Api(api).read_api_service(API_SERVICE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--outages", type=float, nargs="+", default=[5.0, 20.0, 40.0])
    args = parser.parse_args()
    with harness.scratch() as workdir, harness.environment_running(workdir) as (plane, api, operator):
        assert operator.popen is not None
        environment.wait_for_data_api(plane)
        for outage in args.outages:
            operator.kill()
            operator.popen.wait()
            harness.wait_until(lambda: not _available(api), timeout=120)
            time.sleep(outage)
            started = time.monotonic()
            operator.start(data_api=False)
            ready = time.monotonic() - started
            environment.wait_for_data_api(plane, timeout=120)
            served = time.monotonic() - started
            print(
                f"unavailable for {outage:g} s more: operator ready {ready:.1f} s after its start, "
                f"data API served {served:.1f} s after it",
                flush=True,
            )


if __name__ == "__main__":
    main()
