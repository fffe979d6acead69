"""Large CPU buffers reused from the heap while a synthesis runs (glibc's malloc).

Eager PyTorch allocates a fresh output for almost every operation. glibc serves requests
above its mmap threshold (at most 32 MiB by default) with a new ``mmap`` and returns them
with ``munmap`` when freed, so every such tensor costs a page fault per 4 KiB page on its
first write, each fault zeroing the page in the kernel. PInt's feature maps for one pass are
tens of MiB: on the project's 2-core machine the faults were a fifth of the CPU time of a
synthesis (512 x 512 x 12 -> 45: 2.0 million faults and 6.4 s of system time against
0.27 million and 0.9 s with the heap reused; docs/speed.md). Raising the thresholds keeps
freed buffers in the heap, where the next pass reuses the same, already mapped pages. The
first few passes leave holes (a request larger than the hole before it, by its alignment,
extends the heap), so the heap settles at a few passes' worth of buffers, not one.

Both settings are process-wide, so :func:`heap_reuse` is a context: on exit it sets the
thresholds to the values glibc's own adaptive rule settles at after large frees (32 MiB
mmap, 64 MiB trim) and hands the free heap back to the system (``malloc_trim``), so the
host process (napari) keeps no more memory after a synthesis than before. Elsewhere
(macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
import threading
from collections.abc import Iterator
from functools import cache

#: mallopt parameters of glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Where glibc's adaptive thresholds end up after large blocks are freed (64-bit).
_GLIBC_MMAP_MAX = 32 << 20
_INT_MAX = 2**31 - 1
#: Requests up to this size come from the heap inside :func:`heap_reuse`.
HEAP_REUSE_BYTES = 1 << 30

_lock = threading.Lock()
_depth = 0


@cache
def _glibc() -> ctypes.CDLL | None:
    """glibc's C library with ``mallopt`` and ``malloc_trim``, or None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        gnu_get_libc_version = libc.gnu_get_libc_version  # only glibc has it
    except (OSError, AttributeError):
        return None
    gnu_get_libc_version.restype = ctypes.c_char_p
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    return libc


def _set_thresholds(libc: ctypes.CDLL, mmap_bytes: int) -> bool:
    # mallopt takes an int: clamp rather than let ctypes wrap 2 GiB round to a negative
    trim_bytes = min(2 * mmap_bytes, _INT_MAX)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, min(mmap_bytes, _INT_MAX))
                and libc.mallopt(_M_TRIM_THRESHOLD, trim_bytes))


@contextlib.contextmanager
def heap_reuse(max_bytes: int = HEAP_REUSE_BYTES) -> Iterator[bool]:
    """Serve allocations up to ``max_bytes`` from the heap while the block runs.

    Yields whether the setting took effect (False off glibc). Nested and concurrent uses
    (two syntheses in two threads) keep the setting until the last one leaves.
    """
    global _depth
    libc = _glibc()
    if libc is None:
        yield False
        return
    with _lock:
        _depth += 1
        active = _set_thresholds(libc, max_bytes) if _depth == 1 else True
    try:
        yield active
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _set_thresholds(libc, _GLIBC_MMAP_MAX)
                libc.malloc_trim(0)
