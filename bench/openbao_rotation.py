"""Re-wrap N accounts on an OpenBao transit key after `rotate`: the time, and the calls to OpenBao.

Calls are counted by the operator's own counter of HTTP requests to vaults
(vaop_vault_requests_total{provider="openbao"}), read from its /metrics before and after the
rotation (OpenBao 2 allows audit devices only from its config file, not the dev server's API).
The floor beside it: N bare transit `rewrap` calls from one client against the same server.

    .venv/bin/python -m bench.openbao_rotation --accounts 200
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter

from kubernetes import client

from bench import harness
from vaop import models
from vaopdev import openbao


def _vault_requests(metrics_url: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in harness.metrics_text(metrics_url).splitlines():
        match = re.match(r'vaop_vault_requests_total\{endpoint="([^"]+)",provider="openbao"\} (\S+)', line)
        if match:
            counts[match[1]] = int(float(match[2]))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=200)
    args = parser.parse_args()
    count = args.accounts
    with harness.scratch() as workdir, harness.environment_running(workdir) as (plane, api, operator):
        bao = openbao.start(plane, api, workdir / "openbao")
        ns = harness.namespace(api, "bao")
        client.CoreV1Api(api).create_namespaced_service_account(
            ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="tenant"))
        )
        bao.api("POST", "transit/keys/kek", {"type": "rsa-2048"})
        bao.grant(policy="tenant", key="kek")
        bao.role(name="tenant", namespace=ns, service_account="tenant", policy="tenant")
        custom = client.CustomObjectsApi(api)
        vault = {"region": "westeurope", "provider": {"openbao": {"address": bao.address, "role": "tenant"}}}
        harness.customer_key_setup(api, ns, vault, "kek")

        def on(version: str) -> bool:
            return harness.all_wrapped_by(api, ns, count, version)

        harness.create_customer_key_accounts(api, ns, count, identity="tenant")
        harness.wait_until(lambda: on("1"), timeout=1800)
        time.sleep(1)
        before = _vault_requests(operator.metrics_url)

        def detected() -> bool:
            key = custom.get_namespaced_custom_object(models.GROUP, models.VERSION, ns, "customerkeys", "key")
            return bool(key.get("status", {}).get("currentVersion") == "2")

        started = time.perf_counter()
        bao.api("POST", "transit/keys/kek/rotate")
        harness.wait_until(detected, timeout=600, interval=0.1)
        detection = time.perf_counter() - started
        harness.wait_until(lambda: on("2"), timeout=1800)
        rotation = time.perf_counter() - started - detection
        calls = _vault_requests(operator.metrics_url)
        calls.subtract(before)
        # Floor: the same number of bare rewraps by one client with the root token.
        ciphertext = bao.api(
            "POST", "transit/encrypt/kek", {"plaintext": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
        )["data"]["ciphertext"]
        floor = harness.timed(
            lambda: [bao.api("POST", "transit/rewrap/kek", {"ciphertext": ciphertext}) for _ in range(count)]
        )
        bao.stop()
    print(f"accounts: {count} on one OpenBao transit key (rsa-2048), one identity")
    print(f"detection of the new version (polling: interval 30 s with jitter): {detection:.1f} s")
    print(f"re-wrap after detection, until all on v2: {rotation:.1f} s ({count / rotation:.1f} accounts/s)")
    print(f"calls OpenBao received during the rotation: {sum(calls.values())}")
    for path, number in calls.most_common():
        print(f"  {path}: {number}")
    print(
        f"floor: {count} bare transit rewraps from one client: {floor:.1f} s; ratio {rotation / floor:.1f}x"
    )


if __name__ == "__main__":
    main()
