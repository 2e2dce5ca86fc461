"""How the process's C library holds freed memory: given back as training and prediction go (the default), or kept
for the next batch (opt-in for training, `reuse_freed_memory=true`, for images of one size; prediction keeps up to a
bound).

glibc's malloc serves big blocks (a batch's activations: tens of MB each) with a fresh `mmap` at first, but once
such blocks are freed it raises its threshold and serves blocks of up to 32 MB from one heap, which it can shrink
only from its top. With photos of many sizes that heap fills with holes between live blocks and the process grows
epoch after epoch; `trim_freed_memory` hands every free page back (`malloc_trim`), for a few milliseconds.
Inside `reusing_freed_memory`, malloc instead takes every block from its heap and keeps what is freed for the next
batch, which spares the page faults of fresh memory; without a limit that pays only when every batch has the same
shapes, with one `trim_freed_memory` still hands the free pages back once they pass it. Other C libraries (macOS,
Windows, musl) are left as they are.
"""

from __future__ import annotations

import ctypes
import functools
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# mallopt(3) parameters, and glibc's documented defaults that the block restores.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536
KEEP_ALL = 2**31 - 1  # mallopt takes a C int: keep up to 2 GiB of freed memory at the top of the heap
_reusing = False  # inside `reusing_freed_memory`: trimming would undo it, up to `_limit` free bytes
_limit = math.inf


class _Mallinfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (2.33 and later): the heap's use, summed over every arena."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            *("arena", "ordblks", "smblks", "hblks", "hblkhd"),
            *("usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"),
        )
    ]


@functools.cache  # looked up once: trimming runs every few steps
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


def free_heap_bytes() -> int | None:
    """Bytes that lie free in malloc's heap (every arena); None where the C library cannot tell (not glibc, or one
    older than 2.33)."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _Mallinfo2
    return int(libc.mallinfo2().fordblks)


def _keeps_freed_memory() -> bool:
    """Whether `reusing_freed_memory` keeps the heap's free pages now: always without a limit, within one only while
    glibc says that no more than the limit lies free."""
    if not _reusing:
        return False
    if _limit == math.inf:
        return True
    free = free_heap_bytes()
    return free is not None and free <= _limit


def trim_freed_memory() -> bool:
    """Give the heap's free pages back to the system; a no-op (False) where the C library is not glibc, and while
    `reusing_freed_memory` keeps them on purpose (up to its limit)."""
    libc = _glibc()
    return libc is not None and not _keeps_freed_memory() and bool(libc.malloc_trim(0))


def reuse_freed_memory() -> bool:
    """From now on, for the life of the process, big allocations come from (and return to) malloc's heap
    instead of fresh mappings. Returns whether that is in force (False where the C library is not glibc)."""
    libc = _glibc()
    return libc is not None and _set(libc, 0, KEEP_ALL)


@contextmanager
def reusing_freed_memory(enabled: bool = True, limit: float = math.inf) -> Iterator[bool]:
    """`reuse_freed_memory` for the block only; yields whether it is in force. `trim_freed_memory` inside it hands
    the free pages back only once more than `limit` bytes lie free (always, where glibc cannot tell). Data
    loader workers forked inside the block keep it. A block inside another changes nothing. On exit glibc's default
    limits are restored (its dynamic mmap threshold stays off) and the kept memory is given back."""
    global _reusing, _limit
    if _reusing:
        yield True
        return
    libc = _glibc() if enabled else None
    if libc is None or not _set(libc, 0, KEEP_ALL):
        yield False
        return
    _reusing, _limit = True, limit
    try:
        yield True
    finally:
        _reusing, _limit = False, math.inf
        _set(libc, DEFAULT_MMAP_MAX, DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)
