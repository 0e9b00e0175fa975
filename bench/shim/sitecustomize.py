"""Loaded by the operator under `bench.soak` (this folder on its PYTHONPATH). Benchmark tooling
only: the operator itself knows nothing of it, and does nothing differently without these settings.

``VAOP_BENCH_MEMTRACE`` (``--trace-memory``): traces the operator's Python allocations
(tracemalloc) and writes a snapshot to ``$VAOP_BENCH_MEMTRACE/<minute>.snapshot`` every minute,
so the soak can say which code holds the memory that grew.

``VAOP_BENCH_TOKEN_RENEW_SECONDS`` (``--week``): the operator renews its ServiceAccount tokens
after that many seconds instead of 480. The apiserver grants no token shorter than 10 minutes,
so a week of renewals cannot pass in a short run any other way; the tokens themselves are real.

``VAOP_BENCH_MALLINFO`` (``--week``): every 30 s appends glibc's own account of the heap
(``mallinfo2``: bytes in use, bytes free but kept, bytes in mmapped blocks) to that file, so the soak
can tell memory the process still holds (a leak outside Python's objects) from memory it freed
that the allocator keeps (fragmentation), and the part of that at the top of the heap, which glibc
hands back once it exceeds its trim threshold (``keepcost``). Beside each record, glibc's
``malloc_info`` (every free chunk by size, per arena) goes to ``<that file>.<minute>.xml``. With
``VAOP_BENCH_MALLOC_TRIM`` set as well, each record is taken right after ``malloc_trim(0)`` hands
free pages back to the system.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
import time
import tracemalloc

FOLDER = os.environ.get("VAOP_BENCH_MEMTRACE")
RENEW_SECONDS = os.environ.get("VAOP_BENCH_TOKEN_RENEW_SECONDS")
MALLINFO = os.environ.get("VAOP_BENCH_MALLINFO")
MALLOC_TRIM = bool(os.environ.get("VAOP_BENCH_MALLOC_TRIM"))


def _dump_every_minute(folder: str) -> None:
    started = time.monotonic()
    while True:
        time.sleep(60)
        minute = round((time.monotonic() - started) / 60)
        tracemalloc.take_snapshot().dump(os.path.join(folder, f"{minute:04d}.snapshot"))


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    return libc


def heap() -> tuple[int, int, int, int]:
    """glibc's bytes in use, freed but kept, in mmapped blocks, and free at the main heap's top
    (``mallinfo2``), for the whole heap."""
    from vaop import allocator

    info = allocator.heap_account()
    return info.uordblks, info.fordblks, info.hblkhd, info.keepcost


def _write_malloc_info(path: str) -> None:
    out = _libc().fopen(path.encode(), b"w")
    if out:
        _libc().malloc_info(0, out)
        _libc().fclose(out)


def _record_mallinfo(path: str) -> None:
    started = time.monotonic()
    while True:
        time.sleep(30)
        if MALLOC_TRIM:
            _libc().malloc_trim(0)
        used, free, mapped, top = heap()
        minute = (time.monotonic() - started) / 60
        _write_malloc_info(f"{path}.{minute:06.2f}.xml")
        with open(path, "a") as out:  # minute, in use, free but kept, mmapped, free at the top (bytes)
            out.write(f"{minute:.2f} {used} {free} {mapped} {top}\n")


if MALLINFO:
    threading.Thread(target=_record_mallinfo, args=(MALLINFO,), daemon=True, name="mallinfo").start()

if FOLDER:
    tracemalloc.start(8)
    threading.Thread(target=_dump_every_minute, args=(FOLDER,), daemon=True, name="memtrace").start()

if RENEW_SECONDS:
    from vaop import kubeclient

    kubeclient._RENEW_AFTER = float(RENEW_SECONDS) / kubeclient.TOKEN_SECONDS
