"""Undo: give every file a journal records its old name back, never replacing a file."""

from __future__ import annotations

from collections.abc import Iterator

from detective.label.journal import JournalEntry, JournalRecord
from detective.label.rename import Disk, DryDisk, is_other_link
from detective.label.results import Result


def undo(record: JournalRecord, dry_run: bool = False) -> Iterator[Result]:
    """Give every file of a journal its old name back, newest rename first; safe to repeat and after a kill.

    Per attempt: the new name exists and the old one is free -> renamed back; the old name is in place ->
    nothing (never done, or already undone); both names taken by different files -> reported, never replaced.
    """
    disk = DryDisk() if dry_run else Disk()
    for entry in record.to_undo:
        yield _undo_one(disk, entry)


def _undo_one(disk: Disk, entry: JournalEntry) -> Result:
    new, old = entry.new, entry.old
    if not disk.exists(new):
        if disk.exists(old):
            return Result(new, "already", old)
        return Result(new, "failed", old, "neither name exists any more (moved or deleted since the run)")
    if entry.outcome is None and disk.exists(old) and not is_other_link(old, new):
        return Result(new, "already", old)  # the run stopped before this rename: `new` is someone else's file
    try:
        disk.rename(new, old)
    except FileExistsError:
        return Result(new, "conflict", old, "the old name is taken by another file")
    except OSError as e:
        return Result(new, "failed", old, e.strerror or str(e))
    return Result(new, "renamed", old)
