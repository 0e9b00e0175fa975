"""Prometheus metrics. Labels are bounded sets (states, providers, operations, outcomes, reasons):
never account names, key names or anything derived from key material."""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram, start_http_server

ACCOUNTS = Gauge("vaop_accounts", "Accounts by state.", ["state"])
LEADING = Gauge(
    "vaop_leader",
    "1 while this replica leads (reconciles accounts, writes status, runs the key monitor), else 0.",
)
WRAPS = Counter(
    "vaop_account_key_wraps_total",
    "Account-key wraps by operation (create, rewrap), wrapping key type and outcome.",
    ["operation", "type", "outcome"],
)
PROVIDER_CALLS = Histogram(
    "vaop_provider_call_duration_seconds",
    "Key-vault calls by provider, operation and outcome (ok, or the reason code).",
    ["provider", "operation", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
VAULT_REQUESTS = Counter(
    "vaop_vault_requests_total",
    "HTTP requests sent to remote vaults, by provider and endpoint (login, keys, encrypt, decrypt, rewrap).",
    ["provider", "endpoint"],
)
PLATFORM_KEY_ENVELOPES = Gauge(
    "vaop_platform_key_envelopes",
    "Envelopes using each platform key version (key: infrastructure-key, system-key): a version at 0 "
    "can be retired.",
    ["key", "version"],
)
ROTATIONS = Counter("vaop_key_rotations_total", "Account keys re-wrapped onto another key version.")
REWRAP_SECONDS = Histogram(
    "vaop_rewrap_duration_seconds",
    "Time to re-wrap one account key: unwrap, wrap, seal and the Secret update.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DETECTION_SECONDS = Histogram(
    "vaop_key_inaccessible_detection_seconds",
    "Time from the first failing check of a key to its accounts showing KeyInaccessible.",
    buckets=(0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1200),
)
ADMISSIONS = Counter(
    "vaop_admission_decisions_total",
    "Admission webhook decisions by kind, operation and verdict.",
    ["kind", "operation", "allowed"],
)
DATA_REQUESTS = Counter(
    "vaop_data_api_requests_total",
    "Data API requests by resource, verb and whether they were authorized.",
    ["resource", "verb", "allowed"],
)
EVENT_LOOP_TASKS = Gauge(
    "vaop_event_loop_tasks",
    "Tasks on the operator's event loop: steady at rest, a count that keeps growing leaks.",
)
RECONCILIATIONS = Counter(
    "vaop_account_reconciliations_total", "Account reconciliations by result reason.", ["reason"]
)
CACHE_ENTRIES = Gauge(
    "vaop_cache_entries",
    "Entries in each bounded in-memory cache: flat after the first sweep, at most its limit.",
    ["cache"],
)


@contextmanager
def provider_call(provider: str, operation: str) -> Iterator[None]:
    started = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except Exception as error:
        outcome = getattr(error, "reason", error.__class__.__name__)
        raise
    finally:
        PROVIDER_CALLS.labels(provider, operation, outcome).observe(time.perf_counter() - started)


def count_states(states: Callable[[], Tally[str]]) -> None:
    """``vaop_accounts{state}`` is counted at scrape time from the accounts' records."""

    def counter(state: str) -> Callable[[], float]:
        return lambda: float(states().get(state, 0))

    for known in ("Provisioning", "Active", "KeyInaccessible", "Error"):
        ACCOUNTS.labels(known).set_function(counter(known))


def serve(port: int, loop: asyncio.AbstractEventLoop) -> None:
    EVENT_LOOP_TASKS.set_function(lambda: len(asyncio.all_tasks(loop)))
    if port:
        start_http_server(port)
