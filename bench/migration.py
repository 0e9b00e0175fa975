"""An upgrade's format move of N accounts, each with a Video, beside the floor of the same writes.

The operator starts on N SystemKey accounts as the operator before account IDs left them (format 1
envelopes and sealed objects bound to metadata.uid, no account-id annotation; written here by
tests/integration/legacy.py as that operator wrote them). Timed: from its start to every account
annotated with its account ID, its Secret in format 2, and its Video's SealedObject resealed in
format 2 and owned by it. The move needs no vault call for the envelopes (their outer layer only
is resealed); the sealed objects need the account key, opened once per account.

Floor, the same run and apiserver: the writes the move cannot do without, bare, by 8 writers: N
Secret replaces, N account metadata patches, N SealedObject replaces.

    .venv/bin/python -m bench.migration --accounts 1000
"""

from __future__ import annotations

import argparse
import base64
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client
from tests.integration import legacy

from bench import harness
from vaop import labels, models


def _moved(api: client.ApiClient, ns: str) -> tuple[int, int]:
    """(accounts annotated, SealedObjects in format 2 and owned), counted from paged listings."""
    custom = client.CustomObjectsApi(api)
    annotated = moved = 0
    token = None
    while True:
        page = custom.list_namespaced_custom_object(
            models.GROUP, models.VERSION, ns, "videoanalyzeraccounts", limit=500, _continue=token
        )
        annotated += sum(
            labels.ANNOTATION_ACCOUNT_ID in (a["metadata"].get("annotations") or {}) for a in page["items"]
        )
        token = page["metadata"].get("continue")
        if not token:
            break
    while True:
        page = custom.list_namespaced_custom_object(
            "internal.videoanalyzer.io", "v1alpha1", ns, "sealedobjects", limit=500, _continue=token
        )
        moved += sum(
            s["spec"]["format"] == 2 and bool(s["metadata"].get("ownerReferences")) for s in page["items"]
        )
        token = page["metadata"].get("continue")
        if not token:
            return annotated, moved


def floor(api: client.ApiClient, ns: str, count: int) -> float:
    """N Secret replaces, N account annotation patches and N SealedObject replaces, bare, made as the
    operator makes them (its identity: the webhook leaves its writes out)."""
    accounts = _left_by_the_old_operator(api, ns, count)
    as_operator = legacy.as_operator(api)
    core, custom = client.CoreV1Api(as_operator), client.CustomObjectsApi(as_operator)

    def write(item: legacy.Legacy) -> None:
        secret = core.read_namespaced_secret(f"{item.name}-account-key", ns)
        secret.data = {labels.ENVELOPE_DATA_KEY: base64.b64encode(b"y" * 900).decode()}
        core.replace_namespaced_secret(secret.metadata.name, ns, secret)
        custom.patch_namespaced_custom_object(
            models.GROUP, models.VERSION, ns, "videoanalyzeraccounts", item.name,
            {"metadata": {"annotations": {labels.ANNOTATION_ACCOUNT_ID: item.uid}}},
        )  # fmt: skip
        sealed: dict[str, Any] = custom.list_namespaced_custom_object(
            "internal.videoanalyzer.io", "v1alpha1", ns, "sealedobjects",
            label_selector=f"{labels.SEALED_OBJECT_ACCOUNT}={item.name}",
        )["items"][0]  # fmt: skip
        sealed["spec"]["format"] = 2
        custom.replace_namespaced_custom_object(
            "internal.videoanalyzer.io", "v1alpha1", ns, "sealedobjects", sealed["metadata"]["name"], sealed
        )

    return harness.timed(lambda: harness.parallel(accounts, write))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=1000)
    args = parser.parse_args()
    count = args.accounts
    with (
        harness.scratch() as workdir,
        harness.environment_running(workdir) as (plane, api, operator),
    ):
        harness.wait_until(lambda: _platform_keys_made(api), timeout=60)  # the leader makes them first
        operator.stop()  # the floor's accounts must not be moved by it
        floor_ns = harness.namespace(api, "floor")
        floor_seconds = floor(api, floor_ns, count)  # first, on the emptier store: it is not made slow
        operator.start()  # a namespace is deleted only while every API group (the data API) answers
        _delete(api, floor_ns)
        operator.stop()
        ns = harness.namespace(api, "upgrade")
        provisioning = harness.timed(lambda: _left_by_the_old_operator(api, ns, count))
        since = time.time()
        started = time.perf_counter()
        operator.start()
        assert operator.popen is not None
        pids = {**plane.pids(), "operator": operator.popen.pid}
        with harness.cpu_used(pids) as cpu:
            harness.wait_until(lambda: _moved(api, ns) == (count, count), timeout=3600, interval=2)
        moved = time.perf_counter() - started
        time.sleep(2)  # the last writes' audit entries
        requests = harness.request_counts(plane, since=since, users={harness.operator_user()})
    print(
        f"accounts: {count} SystemKey, each with one Video, left in format 1 "
        f"(written in {provisioning:.1f} s)"
    )
    print(f"operator start to all moved to format 2:  {moved:.1f} s ({count / moved:.1f} accounts/s)")
    print(
        "floor: the same writes bare (Secret replace, annotation patch, SealedObject replace) "
        f"x{count}: {floor_seconds:.1f} s"
    )
    print(f"ratio of the move to its floor: {moved / floor_seconds:.2f}x")
    harness.print_requests("apiserver requests of the operator during the move", requests, count)
    print(
        f"CPU seconds used during the move ({moved:.1f} s on 2 cores): "
        + ", ".join(
            f"{name} {seconds:.1f}" for name, seconds in sorted(cpu.items(), key=lambda item: -item[1])
        )
    )


def _left_by_the_old_operator(api: client.ApiClient, ns: str, count: int) -> list[legacy.Legacy]:
    keys = legacy.platform_keys(api)
    with legacy.as_operator(api) as as_operator, ThreadPoolExecutor(8) as pool:
        return list(
            pool.map(lambda i: legacy.provision(api, as_operator, ns, f"acct-{i}", keys=keys), range(count))
        )


def _platform_keys_made(api: client.ApiClient) -> bool:
    try:
        legacy.platform_keys(api)
    except client.ApiException:
        return False
    return True


def _delete(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    core.delete_namespace(ns)

    def gone() -> bool:
        return ns not in {n.metadata.name for n in core.list_namespace().items}

    harness.wait_until(gone, timeout=1800, interval=2)


if __name__ == "__main__":
    main()
