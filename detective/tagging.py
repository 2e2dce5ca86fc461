"""Safe bulk tagging of AI-generated images: add or remove a name tag, journal every rename, undo it.

`img_01.jpg` -> `img_01_ai.jpg`, so that the dataset's token rule (`detective.data.labels`) reads the image
as AI. Made to be run on thousands of files without fear:

- nothing is ever overwritten: every rename is a no-clobber rename (`rename_no_clobber`), so a name that is
  taken, even by a file created during the run, is reported instead of replaced;
- every rename is written to a journal (a hidden JSON Lines file in the folder) before it happens, so a
  run that is killed halfway can be undone exactly (`undo`), or resumed by running it again: tagging skips
  names that are already tagged, so a second run only does what the first did not.

Standard library only (no torch), so `label.py` starts instantly.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from detective.data.labels import is_ai_name, is_image_name, name_tokens, split_extension

DEFAULT_TAG = "_ai"
JOURNAL_KIND = "detective-label"
JOURNAL_PREFIX = ".detective-label-"  # hidden, so neither the dataset nor a later run reads it as an image
MAX_NUMBER = 999  # `--on-conflict number` tries `-2` ... `-999` before giving up on a file
TAKEN = "the new name is taken by another file"

Status = Literal["renamed", "already", "kept", "not_image", "conflict", "failed"]
OnConflict = Literal["skip", "number"]
# Hard links unsupported here (FAT/exFAT give EPERM, some network mounts ENOTSUP/ENOSYS): rename another way.
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK})


class LabelError(ValueError):
    """A problem with what the user gave (folder, tag, journal); the message is one line that says the fix."""


def default_token(tag: str) -> str:
    """The dataset token that a tag writes: `_ai` -> `ai`, `-Gen2` -> `gen_2`."""
    return "_".join(name_tokens(tag))


@dataclass(frozen=True)
class TagRule:
    """The tag that `label.py` adds, and the token the dataset looks for (derived from the tag unless given)."""

    tag: str = DEFAULT_TAG
    token: str = ""

    def __post_init__(self) -> None:
        if any(sep and sep in self.tag for sep in ("/", "\0", os.sep, os.altsep)):
            raise LabelError(f"the tag {self.tag!r} contains a path separator; use letters, digits, '_' or '-'")
        if not name_tokens(self.tag):
            raise LabelError(f"the tag {self.tag!r} has no letters or digits; use one like '_ai' or '_gen'")
        if self.tag[0].isalnum():
            # Without a separator the tag would glue onto the last word (`photo` -> `photoai`), which no token rule
            # can see, and untagging could not tell a tag from the end of a word (`Thai`).
            raise LabelError(f"the tag {self.tag!r} must start with a separator such as '_' or '-', e.g. '_{self.tag}'")
        if not self.token:
            object.__setattr__(self, "token", default_token(self.tag))
        elif not name_tokens(self.token):
            raise LabelError(f"the token {self.token!r} has no letters or digits; use one like 'ai' or 'gen'")

    def recognised(self, name: str) -> bool:
        """Whether the dataset reads `name` as AI (its token rule, with this token)."""
        return is_ai_name(name, self.token)

    def is_tagged(self, name: str) -> bool:
        """Already tagged: the dataset sees the token (`x_ai.jpg`, `x-AI.png`), or the stem ends with the tag."""
        return self.recognised(name) or self._ends_with_tag(split_extension(name)[0])

    def tagged(self, name: str) -> str:
        """`img_01.jpg` -> `img_01_ai.jpg`: the tag goes before the extension, which keeps its case."""
        stem, ext = split_extension(name)
        return stem + self.tag + ext

    def untagged(self, name: str) -> str | None:
        """The name without its trailing tag, or None when no tag ends the stem (`AI-cat.jpg`, `x (ai).png`).

        The tag itself is stripped exactly (so untagging inverts tagging), else a separator run plus the token
        at the very end (`x-AI.png` -> `x.png`). None too when nothing visible would be left (`_ai.jpg`).
        """
        stem, ext = split_extension(name)
        base = stem[: -len(self.tag)] if self._ends_with_tag(stem) else self._strip_token(stem)
        if base is None or not is_image_name(base + ext):
            return None
        return base + ext

    def _ends_with_tag(self, stem: str) -> bool:
        return len(stem) > len(self.tag) and stem[-len(self.tag) :].casefold() == self.tag.casefold()

    def _strip_token(self, stem: str) -> str | None:
        """`stem` minus a trailing `<separators><token>`; the cut must fall on a token boundary of the dataset rule."""
        needle = name_tokens(self.token)
        if not stem or not stem[-1].isalnum():
            return None
        # Token characters are exactly the `isalnum` ones, so a separator run starts where alnum meets non-alnum.
        for i in range(len(stem) - 1, 0, -1):
            if stem[i].isalnum() or not stem[i - 1].isalnum():
                continue
            tail = name_tokens(stem[i:])
            if tail == needle:
                return stem[:i]
            if len(tail) >= len(needle):
                return None
        return None


@dataclass(frozen=True)
class Result:
    """What happened to one file: `src` was (or would be) renamed to `dst`, or was left alone and why."""

    src: Path
    status: Status
    dst: Path | None = None
    detail: str = ""
    unrecognised: bool = False  # renamed, yet the dataset still does not read the new name as AI


@dataclass(frozen=True)
class Plan:
    """The renames one run will attempt, and the files it leaves alone (with the reason, for the summary)."""

    root: Path
    rule: TagRule
    untag: bool
    on_conflict: OnConflict
    renames: list[tuple[Path, str]] = field(default_factory=list)  # (file, its new name)
    others: list[Result] = field(default_factory=list)


def check_folder(folder: Path) -> list[os.DirEntry]:
    """The entries of the folder to label, or a LabelError that says what is wrong with it."""
    if not folder.exists():
        raise LabelError(f"folder not found: {folder} (check the path)")
    if not folder.is_dir():
        raise LabelError(f"not a folder: {folder} is a file; give the folder that holds the images")
    try:
        return _entries(folder)
    except OSError as e:
        raise LabelError(f"cannot read folder {folder}: {e.strerror} (check its permissions)") from e


def _entries(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def _files(entries: list[os.DirEntry], recursive: bool, problems: list[Result]) -> Iterator[os.DirEntry]:
    """Every non-folder entry, then (when recursive) those of visible subfolders; symlinked folders are not followed."""
    for entry in entries:
        if entry.name.startswith(JOURNAL_PREFIX):
            continue
        if not entry.is_dir(follow_symlinks=False):
            yield entry
        elif recursive and not entry.name.startswith("."):
            try:
                sub = _entries(Path(entry.path))
            except OSError as e:
                problems.append(Result(Path(entry.path), "failed", detail=f"cannot read folder: {e.strerror}"))
                continue
            yield from _files(sub, recursive, problems)


def plan_folder(
    folder: Path,
    rule: TagRule = TagRule(),
    *,
    untag: bool = False,
    recursive: bool = False,
    on_conflict: OnConflict = "skip",
) -> Plan:
    """Decide, without touching anything, which images to rename and which to leave alone.

    With `on_conflict="skip"` a new name that is taken already is reported here, so that a second run over
    such a folder finds nothing to do and writes no journal; `apply` still guards against names taken later.
    """
    plan = Plan(Path(folder), rule, untag, on_conflict)
    for entry in _files(check_folder(plan.root), recursive, plan.others):
        path = Path(entry.path)
        status, new_name = _decide(entry, rule, untag)
        if new_name is None:
            plan.others.append(Result(path, status))
        elif on_conflict == "skip" and _taken(_Disk(), path, path.with_name(new_name)):
            plan.others.append(Result(path, "conflict", path.with_name(new_name), TAKEN))
        else:
            plan.renames.append((path, new_name))
    return plan


def _decide(entry: os.DirEntry, rule: TagRule, untag: bool) -> tuple[Status, str | None]:
    if not (is_image_name(entry.name) and entry.is_file()):
        return "not_image", None
    if untag:
        if not rule.is_tagged(entry.name):
            return "already", None
        new_name = rule.untagged(entry.name)
        return ("renamed", new_name) if new_name else ("kept", None)
    if rule.is_tagged(entry.name):
        return "already", None
    return "renamed", rule.tagged(entry.name)


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
        if not _is_other_link(src, dst):
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


def _is_other_link(a: Path, b: Path) -> bool:
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


class _Disk:
    """The real folder, as the runs see it."""

    def exists(self, path: Path) -> bool:
        return os.path.lexists(path)

    def rename(self, src: Path, dst: Path) -> None:
        rename_no_clobber(src, dst)


class _DryDisk(_Disk):
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
    def create(cls, plan: Plan) -> Journal:
        """Write a new journal's header, durably, in the folder being labelled."""
        journal = cls(plan.root)
        header = {
            "journal": JOURNAL_KIND,
            "version": 1,
            "action": "untag" if plan.untag else "tag",
            "root": str(plan.root.resolve()),
            "tag": plan.rule.tag,
            "token": plan.rule.token,
            "on_conflict": plan.on_conflict,
            "planned": len(plan.renames),
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        journal._write(header, sync=True)
        _fsync_folder(plan.root)
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


def _fsync_folder(folder: Path) -> None:
    """Make the journal's own directory entry durable; a no-op where folders cannot be opened (Windows)."""
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


def apply(plan: Plan, journal: Journal | None, pause: float = 0.0) -> Iterator[Result]:
    """Do the plan's renames one by one, yielding each result; with no journal it is a dry run that changes nothing.

    `pause` (seconds after each rename) only exists so that tests can kill a run halfway.
    """
    disk = _DryDisk() if journal is None else _Disk()
    for src, new_name in plan.renames:
        result = _rename_one(disk, journal, src, _candidates(src, new_name, plan.on_conflict))
        if result.status == "renamed" and not plan.untag and not plan.rule.recognised(result.dst.name):
            result = replace(result, unrecognised=True)
        yield result
        if pause and journal is not None:
            time.sleep(pause)


def _candidates(src: Path, new_name: str, on_conflict: OnConflict) -> list[Path]:
    """The names to try in order: the new name, then (`number`) `x_ai-2.jpg`, `x_ai-3.jpg`, ..."""
    if on_conflict == "skip":
        return [src.with_name(new_name)]
    stem, ext = split_extension(new_name)
    return [src.with_name(new_name)] + [src.with_name(f"{stem}-{n}{ext}") for n in range(2, MAX_NUMBER + 1)]


def _taken(disk: _Disk, src: Path, dst: Path) -> bool:
    """`dst` belongs to another file (a leftover second link of `src` is not another file: see rename_no_clobber)."""
    return disk.exists(dst) and not _is_other_link(src, dst)


def _rename_one(disk: _Disk, journal: Journal | None, src: Path, candidates: list[Path]) -> Result:
    for dst in candidates:
        if _taken(disk, src, dst):
            continue  # no journal line for a name known to be taken; the rename below still guards a race
        n = journal.intent(src, dst) if journal else 0
        try:
            disk.rename(src, dst)
        except FileExistsError:
            if journal:
                journal.outcome(n, "exists")
            continue
        except OSError as e:
            if journal:
                journal.outcome(n, "failed", e.strerror or str(e))
            return Result(src, "failed", dst, e.strerror or str(e))
        if journal:
            journal.outcome(n, "done")
        return Result(src, "renamed", dst)
    numbered = f" (and so are its numbered names up to -{MAX_NUMBER})" if len(candidates) > 1 else ""
    return Result(src, "conflict", candidates[0], TAKEN + numbered)


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


def undo(record: JournalRecord, dry_run: bool = False) -> Iterator[Result]:
    """Give every file of a journal its old name back, newest rename first; safe to repeat and after a kill.

    Per attempt: the new name exists and the old one is free -> renamed back; the old name is in place ->
    nothing (never done, or already undone); both names taken by different files -> reported, never replaced.
    """
    disk = _DryDisk() if dry_run else _Disk()
    for entry in record.to_undo:
        yield _undo_one(disk, entry)


def _undo_one(disk: _Disk, entry: JournalEntry) -> Result:
    new, old = entry.new, entry.old
    if not disk.exists(new):
        if disk.exists(old):
            return Result(new, "already", old)
        return Result(new, "failed", old, "neither name exists any more (moved or deleted since the run)")
    if entry.outcome is None and disk.exists(old) and not _is_other_link(old, new):
        return Result(new, "already", old)  # the run stopped before this rename: `new` is someone else's file
    try:
        disk.rename(new, old)
    except FileExistsError:
        return Result(new, "conflict", old, "the old name is taken by another file")
    except OSError as e:
        return Result(new, "failed", old, e.strerror or str(e))
    return Result(new, "renamed", old)
