"""glibc's mmap threshold fixed (iptkit/memory.py): a large block freed goes back to the system.

Each check runs in a fresh interpreter: the setting is per process and lasts its lifetime.
"""

import os
import subprocess
import sys

import pytest

from iptkit.memory import glibc

pytestmark = pytest.mark.skipif(
    glibc() is None or not hasattr(glibc(), "mallinfo2"), reason="glibc >= 2.33 only"
)

# Frees an 8 MiB block (which raises glibc's dynamic threshold to 8 MiB), then allocates 1 MiB
# and prints whether that block was mmapped (in `hblkhd`) rather than carved from the heap.
PROBE = """
import ctypes, sys
from iptkit.memory import fix_mmap_threshold, glibc

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = glibc()
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
fixed = fix_mmap_threshold() if sys.argv[1] == "fix" else False
libc.free(libc.malloc(8 << 20))
before = libc.mallinfo2().hblkhd
block = libc.malloc(1 << 20)
print(fixed, libc.mallinfo2().hblkhd - before >= 1 << 20)
"""


def probe(mode: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_glibc_keeps_a_large_block_in_the_heap_after_a_larger_one_was_freed():
    assert probe("leave") == "False False"


def test_fixed_threshold_maps_the_block_so_freeing_it_returns_it():
    assert probe("fix") == "True True"


def test_a_users_own_malloc_setting_is_left_alone():
    assert probe("fix", MALLOC_TRIM_THRESHOLD_="1048576").startswith("False")
    assert probe("fix", GLIBC_TUNABLES="glibc.malloc.trim_threshold=1048576").startswith("False")
