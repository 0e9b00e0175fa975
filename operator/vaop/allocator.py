"""The C allocator's one setting for a process that runs for months (glibc; elsewhere nothing), and
glibc's own account of the heap, which the soak (bench/shim) and the tests read.

glibc serves a block below its mmap threshold from the heap, and raises the threshold to the size of
any mmapped block freed (up to 32 MiB). After the first large API response or TLS buffer, every large
short-lived buffer comes from the heap, and the runs they free stay with the process: in a simulated
fortnight whose keys stopped gaining versions (`bench.soak --week --days 14 --rotate-days 2`), RSS
rose 0.4 MiB a minute while the bytes in use stayed flat. With the threshold fixed at 64 KiB such
buffers get blocks of their own, handed back when freed, and RSS stayed flat
(docs/operations.md#a-simulated-week-with-every-provider).
"""

from __future__ import annotations

import ctypes
import functools
import os

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
LARGE_BLOCK = 64 * 1024  # bytes; blocks this size and larger are mapped on their own
OWN_SETTING = "MALLOC_MMAP_THRESHOLD_"  # glibc's variable: a threshold the user chose wins


def keep_large_blocks_apart() -> bool:
    """Fix the mmap threshold at ``LARGE_BLOCK`` (which also stops glibc raising it). False where
    the C library has no ``mallopt`` (not glibc) or the user set the threshold themselves."""
    if OWN_SETTING in os.environ:
        return False
    try:
        mallopt = _libc().mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK))


class HeapAccount(ctypes.Structure):
    """glibc's ``struct mallinfo2``, all ten fields (glibc writes them all): bytes in use
    (``uordblks``), freed but kept (``fordblks``), of which at the top (``keepcost``), and in blocks
    mapped on their own (``hblkhd``)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            *("arena", "ordblks", "smblks", "hblks", "hblkhd"),
            *("usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"),
        )
    ]


def heap_account() -> HeapAccount:
    """glibc's ``mallinfo2()``, summed over every arena (glibc 2.33 and later)."""
    mallinfo2 = _libc().mallinfo2
    mallinfo2.restype = HeapAccount
    return mallinfo2()  # type: ignore[no-any-return]


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None)
