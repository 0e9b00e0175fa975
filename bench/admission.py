"""Admission webhook latency: 100 requests/s for a minute, with and without the webhook, same run.

The requests are server-side dry-run label patches of an Active account (admitted, nothing written
to etcd, so the apiserver's storage does not blur the comparison). Reported:
- the webhook's p50/p99 from the apiserver's own histogram
  apiserver_admission_webhook_admission_duration_seconds (with the webhook);
- the apiserver's request latency p50/p99 for those PATCHes (apiserver_request_duration_seconds),
  with the webhook and with the ValidatingWebhookConfiguration removed.

    .venv/bin/python -m bench.admission --rate 100 --seconds 60
"""

from __future__ import annotations

import argparse
import re
import subprocess
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from kubernetes import client

from bench import harness
from vaop import models

_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def _metrics(kubectl: list[str]) -> str:
    return subprocess.run(
        [*kubectl, "get", "--raw", "/metrics"], capture_output=True, text=True, check=True
    ).stdout


def _buckets(text: str, metric: str, must: dict[str, str]) -> dict[float, float]:
    """Cumulative bucket counts of ``metric`` summed over series whose labels include ``must``."""
    buckets: dict[float, float] = defaultdict(float)
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or match["name"] != f"{metric}_bucket":
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if all(labels.get(k) == v for k, v in must.items()):
            buckets[float(labels["le"])] += float(match["value"])
    return buckets


def _quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """histogram_quantile over the increase between two scrapes (linear inside a bucket)."""
    edges = sorted(after)
    counts = [after[e] - before.get(e, 0.0) for e in edges]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return float("nan")
    rank = q * total
    lower_edge, lower_count = 0.0, 0.0
    for edge, count in zip(edges, counts, strict=True):
        if count >= rank:
            if edge == float("inf"):
                return lower_edge
            return lower_edge + (edge - lower_edge) * (rank - lower_count) / max(count - lower_count, 1e-9)
        lower_edge, lower_count = edge, count
    return edges[-1]


def _drive(api: client.ApiClient, ns: str, *, rate: int, seconds: int) -> int:
    custom = client.CustomObjectsApi(api)
    sent = 0
    lock = threading.Lock()

    def one(i: int) -> None:
        nonlocal sent
        custom.patch_namespaced_custom_object(
            models.GROUP,
            models.VERSION,
            ns,
            "videoanalyzeraccounts",
            "target",
            {"metadata": {"labels": {"bench": str(i % 7)}}},
            dry_run="All",
        )
        with lock:
            sent += 1

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        for i in range(rate * seconds):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, i)
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    with harness.scratch() as workdir, harness.environment_running(workdir) as (plane, api, _operator):
        assert plane.bins is not None
        kubectl = [str(plane.bins.kubectl), "--kubeconfig", str(plane.admin_kubeconfig)]
        ns = harness.namespace(api, "adm")
        body = {
            "apiVersion": models.API_VERSION,
            "kind": "VideoAnalyzerAccount",
            "metadata": {"name": "target"},
            "spec": {"region": "westeurope"},
        }
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            models.GROUP, models.VERSION, ns, "videoanalyzeraccounts", body
        )
        harness.wait_until(
            lambda: bool(harness.accounts(api, ns)[0].get("status", {}).get("state") == "Active"), timeout=60
        )
        request_filter = {"verb": "PATCH", "resource": "videoanalyzeraccounts", "dry_run": "All"}
        results = {}
        for phase in ("with webhook", "without webhook"):
            if phase == "without webhook":
                subprocess.run(
                    [*kubectl, "delete", "validatingwebhookconfiguration", "video-analyzer-operator"],
                    check=True,
                )
                time.sleep(2)
            before = _metrics(kubectl)
            sent = _drive(api, ns, rate=args.rate, seconds=args.seconds)
            after = _metrics(kubectl)
            request = (
                _buckets(before, "apiserver_request_duration_seconds", request_filter),
                _buckets(after, "apiserver_request_duration_seconds", request_filter),
            )
            webhook = (
                _buckets(
                    before,
                    "apiserver_admission_webhook_admission_duration_seconds",
                    {"name": f"accounts.{models.GROUP}"},
                ),
                _buckets(
                    after,
                    "apiserver_admission_webhook_admission_duration_seconds",
                    {"name": f"accounts.{models.GROUP}"},
                ),
            )
            results[phase] = (sent, request, webhook)
    for phase, (sent, request, webhook) in results.items():
        print(f"{phase}: {sent} requests at {args.rate}/s")
        p50, p99 = (_quantile(*request, q) * 1000 for q in (0.5, 0.99))
        print(f"  apiserver request p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        if phase == "with webhook":
            p50, p99 = (_quantile(*webhook, q) * 1000 for q in (0.5, 0.99))
            print(f"  webhook p50 {p50:.1f} ms, p99 {p99:.1f} ms")


if __name__ == "__main__":
    main()
