"""An opt-in C library setting (`reuse_freed_memory=true`) for CPU training on images of one size.

glibc's malloc serves big blocks (a batch's activations: tens of MB each) with a fresh `mmap` and unmaps them on
`free`, so every batch faults the same memory in again, page by page, and the kernel zeroes it each time. Inside
`reusing_freed_memory`, malloc takes every block from its heap and keeps what is freed there for the next batch.
That pays only when every batch has the same shapes: with photos of many sizes, blocks of every size share one
heap that fragments and can shrink only from its top, so the process grows without limit; hence off by default.
Other C libraries (macOS, Windows, musl) are left as they are.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# mallopt(3) parameters, and glibc's documented defaults that the block restores.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
KEEP_ALL = 2**31 - 1  # mallopt takes a C int: keep up to 2 GiB of freed memory at the top of the heap


def _glibc() -> ctypes.CDLL | None:
    """The process's own C library when it is glibc (the only one with these knobs), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - raises AttributeError on musl
        return libc
    except (OSError, AttributeError):
        return None


def _set(libc: ctypes.CDLL, mmap_max: int, trim_threshold: int) -> bool:
    return bool(libc.mallopt(M_MMAP_MAX, mmap_max)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim_threshold))


def reuse_freed_memory() -> bool:
    """From now on, for the life of the process, big allocations come from (and return to) malloc's heap
    instead of fresh mappings. Returns whether that is in force (False where the C library is not glibc)."""
    libc = _glibc()
    return libc is not None and _set(libc, 0, KEEP_ALL)


@contextmanager
def reusing_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """`reuse_freed_memory` for the block only; yields whether it is in force. Data loader workers forked
    inside the block keep it. On exit glibc's default limits are restored (its dynamic mmap threshold stays off)
    and the kept memory is given back."""
    libc = _glibc() if enabled else None
    if libc is None or not _set(libc, 0, KEEP_ALL):
        yield False
        return
    try:
        yield True
    finally:
        _set(libc, DEFAULT_MMAP_MAX, DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)
