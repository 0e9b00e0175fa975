"""The data API (sealed Videos through the aggregated API) beside a CRD of the same shape, same run.

Baseline: a CustomResourceDefinition ``plainvideos.bench.videoanalyzer.io`` with the Video's schema,
served by the same kube-apiserver straight from etcd (no aggregation, no sealing). Both get N
creates, N single GETs and full LISTs through the kube-apiserver, from the same client; the
operator's resident memory is read before and after.

    .venv/bin/python -m bench.data_api --objects 1000
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from kubernetes import client

from bench import harness

DATA = ("data.videoanalyzer.io", "v1alpha1", "videos", "Video")
PLAIN = ("bench.videoanalyzer.io", "v1", "plainvideos", "PlainVideo")


def _plain_crd(api: client.ApiClient) -> None:
    spec_schema = {
        "type": "object",
        "properties": {
            "accountName": {"type": "string"},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "archival": {"type": "object", "properties": {"retentionPeriod": {"type": "string"}}},
        },
    }
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "plainvideos.bench.videoanalyzer.io"},
        "spec": {
            "group": PLAIN[0],
            "scope": "Namespaced",
            "names": {"kind": PLAIN[3], "plural": PLAIN[2], "singular": "plainvideo"},
            "versions": [
                {
                    "name": PLAIN[1],
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}},
                }
            ],
        },
    }
    client.ApiextensionsV1Api(api).create_custom_resource_definition(body)
    time.sleep(3)  # the CRD's endpoint appears


def _run(api: client.ApiClient, ns: str, kind: tuple[str, str, str, str], count: int) -> dict[str, float]:
    group, version, plural, name = kind
    custom = client.CustomObjectsApi(api)

    def create(i: int) -> None:
        body: dict[str, Any] = {
            "apiVersion": f"{group}/{version}",
            "kind": name,
            "metadata": {"name": f"v-{i:05d}", "labels": {"camera": f"c{i % 10}"}},
            "spec": {
                "accountName": "studio",
                "title": f"Camera {i}",
                "description": "Front door",
                "archival": {},
            },
        }
        custom.create_namespaced_custom_object(group, version, ns, plural, body)

    def get_each() -> list[float]:
        latencies = []
        for i in range(0, count, max(1, count // 200)):
            started = time.perf_counter()
            custom.get_namespaced_custom_object(group, version, ns, plural, f"v-{i:05d}")
            latencies.append(time.perf_counter() - started)
        return latencies

    def list_all() -> None:
        items = custom.list_namespaced_custom_object(group, version, ns, plural)["items"]
        assert len(items) == count, len(items)

    created = harness.timed(lambda: harness.parallel(list(range(count)), create))
    gets = get_each()
    lists = [harness.timed(list_all) for _ in range(5)]
    return {
        "create": created,
        "get_p50": statistics.median(gets),
        "list": statistics.median(lists),
    }


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        lines = status.read().splitlines()
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=1000)
    args = parser.parse_args()
    count = args.objects
    with harness.scratch() as workdir, harness.environment_running(workdir) as (_, api, operator):
        assert operator.popen is not None
        ns = harness.namespace(api, "data")
        body = {
            "apiVersion": "videoanalyzer.io/v1alpha1",
            "kind": "VideoAnalyzerAccount",
            "metadata": {"name": "studio"},
            "spec": {"region": "westeurope"},
        }
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            "videoanalyzer.io", "v1alpha1", ns, "videoanalyzeraccounts", body
        )
        harness.wait_until(
            lambda: harness.accounts(api, ns)[0].get("status", {}).get("state") == "Active", timeout=60
        )
        _plain_crd(api)
        rss_before = _rss_mib(operator.popen.pid)
        plain = _run(api, harness.namespace(api, "plain"), PLAIN, count)
        data = _run(api, ns, DATA, count)
        custom = client.CustomObjectsApi(api)
        storage_list = statistics.median(
            harness.timed(
                lambda: custom.list_namespaced_custom_object(
                    "internal.videoanalyzer.io", "v1alpha1", ns, "sealedobjects"
                )
            )
            for _ in range(5)
        )
        rss_after = _rss_mib(operator.popen.pid)

    def show(label: str, key: str) -> None:
        print(
            f"{label:<22} data API {data[key] * 1000:9.1f} ms   CRD {plain[key] * 1000:9.1f} ms   "
            f"ratio {data[key] / plain[key]:.1f}x"
        )

    print(f"objects: {count}")
    show(f"create {count} (8 writers)", "create")
    show("GET, median", "get_p50")
    show(f"LIST {count}, median", "list")
    print(f"LIST {count} SealedObjects (what the data API reads to answer): {storage_list * 1000:.1f} ms")
    print(f"operator RSS: {rss_before:.0f} MiB before, {rss_after:.0f} MiB after {count} objects")


if __name__ == "__main__":
    main()
