"""Loaded by the operator under `bench.soak --trace-memory` (this folder on its PYTHONPATH).

Traces the operator's Python allocations (tracemalloc) and writes a snapshot to
``$VAOP_BENCH_MEMTRACE/<minute>.snapshot`` every minute, so the soak can say which code holds
the memory that grew. Benchmark tooling only: the operator itself knows nothing of it.
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc

FOLDER = os.environ.get("VAOP_BENCH_MEMTRACE")


def _dump_every_minute(folder: str) -> None:
    started = time.monotonic()
    while True:
        time.sleep(60)
        minute = round((time.monotonic() - started) / 60)
        tracemalloc.take_snapshot().dump(os.path.join(folder, f"{minute:04d}.snapshot"))


if FOLDER:
    tracemalloc.start(8)
    threading.Thread(target=_dump_every_minute, args=(FOLDER,), daemon=True, name="memtrace").start()
