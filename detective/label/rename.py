"""The no-clobber rename, and the disks a run renames on (the real one, and a dry run's pretend one)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

# Hard links unsupported here (FAT/exFAT give EPERM, some network mounts ENOTSUP/ENOSYS): rename another way.
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK})


def rename_no_clobber(src: Path, dst: Path) -> None:
    """Rename `src` to `dst`; FileExistsError if `dst` exists, even when it appears during the call.

    `os.rename` silently replaces an existing `dst` on POSIX, and checking first leaves a window for another
    program, so the file is moved with `os.link` (atomic, fails when `dst` exists) then `os.unlink(src)`.
    A kill between the two leaves two names for one file, never a lost one, and the next call (a resumed
    run or an undo) sees `dst` as the only other link of `src` and just drops `src`. Where hard links are
    unsupported (FAT/exFAT, some network mounts) it falls back to check-then-rename: that race needs another
    program to create this very name within microseconds. On Windows `os.rename` never replaces anyway.
    """
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        if not is_other_link(src, dst):
            raise
    except NotImplementedError:  # no hard links to symlinks on this platform
        _rename_if_absent(src, dst)
        return
    except OSError as e:
        if e.errno not in _NO_HARD_LINKS:
            raise
        _rename_if_absent(src, dst)
        return
    os.unlink(src)


def is_other_link(a: Path, b: Path) -> bool:
    """`a` and `b` are the only two names of one file: what a rename killed between link and unlink leaves.

    Two entries are needed (st_nlink == 2): on a case-insensitive disk `x.jpg` and `X.jpg` are one entry.
    """
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino) and sa.st_nlink == 2


def _rename_if_absent(src: Path, dst: Path) -> None:
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    os.rename(src, dst)


class Disk:
    """The real folder, as the runs see it."""

    def exists(self, path: Path) -> bool:
        return os.path.lexists(path)

    def rename(self, src: Path, dst: Path) -> None:
        rename_no_clobber(src, dst)


class DryDisk(Disk):
    """Pretends to rename, so that a dry run meets the same taken names and numbers as the real run would."""

    def __init__(self) -> None:
        self.added: set[Path] = set()
        self.removed: set[Path] = set()

    def exists(self, path: Path) -> bool:
        return path in self.added or (path not in self.removed and os.path.lexists(path))

    def rename(self, src: Path, dst: Path) -> None:
        if self.exists(dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
        self.added.discard(src)
        self.removed.add(src)
        self.removed.discard(dst)
        self.added.add(dst)
