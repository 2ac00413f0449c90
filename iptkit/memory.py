"""Large blocks go back to the operating system when they are freed (glibc's mmap threshold).

Why: CPython hands blocks over 512 bytes to the C library's `malloc`. glibc serves a block of
`M_MMAP_THRESHOLD` bytes or more (128 KiB at start) with its own `mmap`, returned to the system
by `free`, but its threshold is dynamic: each time such a block is freed, the threshold rises to
that block's size (up to 32 MiB). Beam's data plane and iptkit's sinks allocate and free blocks
of megabytes (encoded bundle streams, grouped values, shard pieces), so after the first of
them every later block up to its size is carved from the heap and, once freed, stays in the
process in pieces. Measured on synthesize at 25,000 documents on the DirectRunner: peak RSS
1,180-1,199 MB with the dynamic threshold, 989 MB with it fixed at 128 KiB, the same CPU
(benchmarks/RESULTS.md, "glibc's mmap threshold").

Fixing the threshold with `mallopt` turns the dynamic rule off (glibc does so whenever a
process sets it). A user who set any of glibc's `MALLOC_*_` tunables in the environment made
that choice: it is left alone. Other C libraries (musl, macOS) have no such rule: nothing to do.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value
USER_TUNABLES = (
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
)

_fixed: bool | None = None


def glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (it alone has `gnu_get_libc_version`)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "gnu_get_libc_version") else None


def fix_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at 128 KiB for this process, once; whether this call or an
    earlier one fixed it. Cheap after the first call, so every worker-side entry point (the
    read, each stage's set-up, the sinks) calls it."""
    global _fixed
    if _fixed is None:
        libc = glibc()
        chosen = any(name in os.environ for name in USER_TUNABLES) or "malloc" in os.environ.get(
            "GLIBC_TUNABLES", ""
        )
        _fixed = bool(libc and not chosen and libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES))
    return _fixed
