"""The journal of a run: written before each rename, so that `undo` can restore every name, also after a kill."""

from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from detective.files import fsync_folder
from detective.label.results import LabelError

JOURNAL_KIND = "detective-label"
JOURNAL_PREFIX = ".detective-label-"  # hidden, so neither the dataset nor a later run reads it as an image


class Journal:
    """The record of one run: a header line, then per rename attempt an intent line and an outcome line.

    The intent (`{"id", "old", "new"}`) is flushed and fsynced *before* the rename, so even a power cut cannot
    leave a renamed file the journal does not know about. The outcome (`{"id", "status"}`: done, exists,
    failed) is only flushed: if it is lost, `undo` tells from the disk whether the rename happened, and the
    next intent's fsync makes it durable anyway. Paths are relative to the folder, so the folder may move.
    """

    def __init__(self, root: Path) -> None:
        """Open a new journal in `root`, named by time and process; a second one that second gets `-2`, ..."""
        self.root = root
        self._ids = itertools.count(1)
        stamp = f"{JOURNAL_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        for n in itertools.count(1):
            self.path = root / (f"{stamp}.jsonl" if n == 1 else f"{stamp}-{n}.jsonl")
            try:
                self._file = open(self.path, "x", encoding="utf-8")  # noqa: SIM115 - closed by close()
                return
            except FileExistsError:
                continue
            except OSError as e:
                raise LabelError(f"cannot write in {root}: {e.strerror} (label.py needs write access there)") from e

    @classmethod
    def create(cls, root: Path, **run: Any) -> Journal:
        """Write a new journal's header, durably, in the folder being labelled; `run`: what the header records of
        the run (`plan.start_journal` says it)."""
        journal = cls(root)
        header = {
            "journal": JOURNAL_KIND,
            "version": 1,
            "root": str(root.resolve()),
            **run,
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        journal._write(header, sync=True)
        fsync_folder(root)
        return journal

    def intent(self, src: Path, dst: Path) -> int:
        """Record, durably, that `src` is about to become `dst`; returns the attempt's id for `outcome`."""
        n = next(self._ids)
        self._write({"id": n, "old": self._rel(src), "new": self._rel(dst)}, sync=True)
        return n

    def outcome(self, n: int, status: Literal["done", "exists", "failed"], error: str = "") -> None:
        self._write({"id": n, "status": status, **({"error": error} if error else {})}, sync=False)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _write(self, record: dict[str, Any], sync: bool) -> None:
        # ensure_ascii keeps undecodable file names (surrogate escapes) exact through the round trip.
        self._file.write(json.dumps(record, ensure_ascii=True) + "\n")
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())


@dataclass(frozen=True)
class JournalEntry:
    """One rename attempt of a journal; `outcome` is None when the run stopped before recording it."""

    old: Path
    new: Path
    outcome: str | None


@dataclass(frozen=True)
class JournalRecord:
    """A journal read back: its header and attempts, paths made absolute against the journal's folder."""

    path: Path
    header: dict[str, Any]
    entries: list[JournalEntry]

    @property
    def to_undo(self) -> list[JournalEntry]:
        """Attempts that may have renamed something, newest first (so chains of names unwind in order)."""
        return [e for e in reversed(self.entries) if e.outcome not in ("exists", "failed")]


def read_journal(path: Path) -> JournalRecord:
    """Read a journal; a last line cut short by a kill is ignored (its rename had not started)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabelError(f"journal not found: {path} (journals are hidden files .detective-label-*.jsonl)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LabelError(f"cannot read journal {path}: {e}") from e
    *complete, _cut_short = text.split("\n")  # `_cut_short` is "" unless the last write was interrupted
    records = [_parse_line(path, i, line) for i, line in enumerate(complete, 1)]
    if not records or records[0].get("journal") != JOURNAL_KIND or records[0].get("version") != 1:
        raise LabelError(f"not a label.py journal: {path} (give a .detective-label-*.jsonl file)")
    root = path.parent
    outcomes = {r["id"]: r["status"] for r in records[1:] if "status" in r}
    entries = [
        JournalEntry(_inside(root, r["old"], path), _inside(root, r["new"], path), outcomes.get(r["id"]))
        for r in records[1:]
        if "old" in r
    ]
    return JournalRecord(path, records[0], entries)


def _parse_line(path: Path, lineno: int, line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    attempt = isinstance(record, dict) and isinstance(record.get("old"), str) and isinstance(record.get("new"), str)
    outcome = isinstance(record, dict) and isinstance(record.get("status"), str)
    if not isinstance(record, dict) or (lineno > 1 and not ("id" in record and (attempt or outcome))):
        raise LabelError(f"damaged journal {path}, line {lineno}: not a label.py record; restore the file from a copy")
    return record


def _inside(root: Path, rel: str, journal: Path) -> Path:
    """`root/rel`, refusing paths that would leave the folder (a journal edited by hand must not reach out)."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts:
        raise LabelError(f"damaged journal {journal}: path {rel!r} points outside its folder")
    return root.joinpath(*parts)
