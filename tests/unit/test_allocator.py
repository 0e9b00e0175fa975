"""The operator's allocator setting: large buffers get blocks of their own even after a larger one
was freed (glibc would otherwise raise its threshold and serve them from the heap, where the freed
runs stay with the process)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc's allocator only: elsewhere nothing is set"
)

# In a new process: free one 1 MiB block (glibc raises its threshold to 1 MiB), then hold twenty
# 200 KiB buffers and print how many bytes glibc mapped on their own (mallinfo2's hblkhd).
PROBE = """
import sys
from vaop import allocator
if sys.argv[1] == "set":
    assert allocator.keep_large_blocks_apart()
bytearray(1 << 20)  # a 1 MiB block, mapped, then freed
before = allocator.heap_account().hblkhd
held = [bytearray(200 * 1024) for _ in range(20)]
print(allocator.heap_account().hblkhd - before)
"""


def _mapped_for_large_buffers(mode: str) -> int:
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env=environment
    )
    return int(done.stdout)


def test_large_buffers_are_mapped_on_their_own_after_a_larger_one_was_freed() -> None:
    assert _mapped_for_large_buffers("set") >= 20 * 200 * 1024
    assert _mapped_for_large_buffers("unset") < 200 * 1024  # glibc alone: all twenty in the heap


def test_a_threshold_the_user_set_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from vaop import allocator

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert not allocator.keep_large_blocks_apart()
