"""Loaded by the operator under `bench.soak` (this folder on its PYTHONPATH). Benchmark tooling
only: the operator itself knows nothing of it, and does nothing differently without these settings.

``VAOP_BENCH_MEMTRACE`` (``--trace-memory``): traces the operator's Python allocations
(tracemalloc) and writes a snapshot to ``$VAOP_BENCH_MEMTRACE/<minute>.snapshot`` every minute,
so the soak can say which code holds the memory that grew.

``VAOP_BENCH_TOKEN_RENEW_SECONDS`` (``--week``): the operator renews its ServiceAccount tokens
after that many seconds instead of 480. The apiserver grants no token shorter than 10 minutes,
so a week of renewals cannot pass in a short run any other way; the tokens themselves are real.
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc

FOLDER = os.environ.get("VAOP_BENCH_MEMTRACE")
RENEW_SECONDS = os.environ.get("VAOP_BENCH_TOKEN_RENEW_SECONDS")


def _dump_every_minute(folder: str) -> None:
    started = time.monotonic()
    while True:
        time.sleep(60)
        minute = round((time.monotonic() - started) / 60)
        tracemalloc.take_snapshot().dump(os.path.join(folder, f"{minute:04d}.snapshot"))


if FOLDER:
    tracemalloc.start(8)
    threading.Thread(target=_dump_every_minute, args=(FOLDER,), daemon=True, name="memtrace").start()

if RENEW_SECONDS:
    from vaop import kubeclient

    kubeclient._RENEW_AFTER = float(RENEW_SECONDS) / kubeclient.TOKEN_SECONDS
