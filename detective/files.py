"""Durable file operations: whole-or-nothing writes, and syncing the renames of writers that manage their own
temporary files (label journal, shards)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal


@contextmanager
def atomic_write(path: str | os.PathLike, mode: Literal["wb", "w"] = "wb", **open_args: Any) -> Iterator[IO[Any]]:
    """A file to write `path` through: a new temporary file beside it (same filesystem, so the rename is atomic),
    synced and renamed over `path` when the block ends, and deleted if the block or the rename fails. Readers see
    the old file or the whole new one, never half of one; nothing is left behind either way."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with open(temporary, mode.replace("w", "x"), **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def fsync_folder(folder: Path) -> None:
    """Make a rename or a new entry in `folder` durable; a no-op where folders cannot be opened or synced
    (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
