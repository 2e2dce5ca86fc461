"""Planning a run (which images to rename, and which to leave alone and why), then applying the plan."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from detective.data.labels import is_image_name, split_extension
from detective.label.journal import JOURNAL_PREFIX, Journal
from detective.label.rename import Disk, DryDisk, is_other_link
from detective.label.results import LabelError, Result, Status
from detective.label.rule import TagRule

MAX_NUMBER = 999  # `--on-conflict number` tries `-2` ... `-999` before giving up on a file
TAKEN = "the new name is taken by another file"

OnConflict = Literal["skip", "number"]


@dataclass(frozen=True)
class RenamePlan:
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
) -> RenamePlan:
    """Decide, without touching anything, which images to rename and which to leave alone.

    With `on_conflict="skip"` a new name that is taken already is reported here, so that a second run over
    such a folder finds nothing to do and writes no journal; `apply` still guards against names taken later.
    """
    plan = RenamePlan(Path(folder), rule, untag, on_conflict)
    for entry in _files(check_folder(plan.root), recursive, plan.others):
        path = Path(entry.path)
        status, new_name = _decide(entry, rule, untag)
        if new_name is None:
            plan.others.append(Result(path, status))
        elif on_conflict == "skip" and _taken(Disk(), path, path.with_name(new_name)):
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


def start_journal(plan: RenamePlan) -> Journal:
    """A new journal in the plan's folder, its header saying what the run will do."""
    return Journal.create(
        plan.root,
        action="untag" if plan.untag else "tag",
        tag=plan.rule.tag,
        token=plan.rule.token,
        on_conflict=plan.on_conflict,
        planned=len(plan.renames),
    )


def apply(plan: RenamePlan, journal: Journal | None, pause: float = 0.0) -> Iterator[Result]:
    """Do the plan's renames one by one, yielding each result; with no journal it is a dry run that changes nothing.

    `pause` (seconds after each rename) only exists so that tests can kill a run halfway.
    """
    disk = DryDisk() if journal is None else Disk()
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


def _taken(disk: Disk, src: Path, dst: Path) -> bool:
    """`dst` belongs to another file (a leftover second link of `src` is not another file: see rename_no_clobber)."""
    return disk.exists(dst) and not is_other_link(src, dst)


def _rename_one(disk: Disk, journal: Journal | None, src: Path, candidates: list[Path]) -> Result:
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
