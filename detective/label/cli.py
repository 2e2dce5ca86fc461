"""`label.py` / `detective-label`: the command line around `detective.label` (arguments, output, exit status).

Exit status: 0 when everything asked for is done, 1 when some files were skipped because their new name was
taken or their rename failed, 2 for a bad command line, folder or journal, 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from detective.commands import command, program_name
from detective.label.journal import read_journal
from detective.label.plan import apply, plan_folder, start_journal
from detective.label.results import LabelError, Result, Status
from detective.label.rule import DEFAULT_TAG, TagRule
from detective.label.undo import undo
from detective.progress import ProgressBar

PAUSE_ENV = "DETECTIVE_LABEL_TEST_PAUSE"  # seconds to sleep after each rename; lets tests kill a run halfway
PROGRESS_MIN = 200  # fewer renames than this finish too fast for a progress bar to help

# How the summary names each outcome, per action (statuses an action never produces are left out).
WORDS: dict[str, dict[Status, str]] = {
    "tag": {
        "renamed": "renamed",
        "already": "already tagged",
        "not_image": "not images (untouched)",
        "conflict": "skipped (new name taken)",
        "failed": "failed",
    },
    "untag": {
        "renamed": "renamed",
        "already": "not tagged",
        "kept": "tag not at the end (kept)",
        "not_image": "not images (untouched)",
        "conflict": "skipped (new name taken)",
        "failed": "failed",
    },
    "undo": {
        "renamed": "restored",
        "already": "already in place",
        "conflict": "skipped (old name taken)",
        "failed": "failed",
    },
}
VERBS = {"tag": "rename", "untag": "rename", "undo": "restore"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("label"),
        description="Tag AI-generated images by name (img_01.jpg -> img_01_ai.jpg) so the dataset reads them as AI. "
        "Never overwrites a file; every rename goes to a journal that --undo reverses.",
        epilog="examples:  %(prog)s my_ai_images --dry-run   |   %(prog)s my_ai_images -r   |   "
        "%(prog)s --undo my_ai_images/.detective-label-20240101-120000-42.jsonl",
    )
    parser.add_argument("folder", nargs="?", type=Path, help="the folder whose images to tag")
    parser.add_argument("--tag", default=DEFAULT_TAG, help="text put before the extension (default: %(default)s)")
    parser.add_argument(
        "--token",
        default="",
        help="the token the dataset looks for (its data.labels.token); default: the tag's word, e.g. 'gen' for '_gen'",
    )
    parser.add_argument("-r", "--recursive", action="store_true", help="also tag images in subfolders")
    parser.add_argument("-n", "--dry-run", action="store_true", help="show every rename it would do; change nothing")
    parser.add_argument("--untag", action="store_true", help="remove the tag instead (the inverse)")
    parser.add_argument(
        "--on-conflict",
        choices=("skip", "number"),
        default="skip",
        help="when the new name is taken: skip the file and report it (default), or use x_ai-2.jpg, x_ai-3.jpg, ...",
    )
    parser.add_argument("--undo", metavar="JOURNAL", type=Path, help="restore every name a journal records")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every rename (a dry run always does)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.folder is None) == (args.undo is None):
        parser.error("give either a folder to tag or --undo JOURNAL")
    try:
        return _undo(args) if args.undo else _label(args)
    except LabelError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{parser.prog}: interrupted; run the same command again to finish", file=sys.stderr)
        return 130


def _label(args: argparse.Namespace) -> int:
    rule = TagRule(args.tag, args.token)
    plan = plan_folder(args.folder, rule, untag=args.untag, recursive=args.recursive, on_conflict=args.on_conflict)
    action = "untag" if args.untag else "tag"
    report = Report(action, plan.root, args, plan.rule.token)
    for result in plan.others:
        report.add(result)
    if args.dry_run or not plan.renames:
        status = report.run(apply(plan, None), len(plan.renames))
        if args.dry_run:
            print("Dry run: nothing was changed.")
        return status
    with start_journal(plan) as journal:
        undo_hint = f"{command('label')} --undo {shlex.quote(str(journal.path))}"
        print(f"Journal: {journal.path} (undo with: {undo_hint})")
        pause = float(os.environ.get(PAUSE_ENV) or 0)
        try:
            return report.run(apply(plan, journal, pause), len(plan.renames))
        except KeyboardInterrupt:
            print(f"\nInterrupted. Resume: run the same command again. Undo: {undo_hint}", file=sys.stderr)
            return 130


def _undo(args: argparse.Namespace) -> int:
    record = read_journal(args.undo)
    status = Report("undo", record.path.parent, args).run(undo(record, args.dry_run), len(record.to_undo))
    print(f"{'Dry run: nothing was changed. ' if args.dry_run else ''}The journal stays at {record.path}.")
    return status


class Report:
    """Prints problems (and renames with --verbose or --dry-run) as they happen, then the summary."""

    def __init__(self, action: str, root: Path, args: argparse.Namespace, token: str = "") -> None:
        self.action, self.root, self.args, self.token = action, root, args, token
        self.counts: Counter[Status] = Counter()
        self.unrecognised = 0
        self.bar: ProgressBar | None = None

    def add(self, result: Result) -> None:
        self.counts[result.status] += 1
        self.unrecognised += result.unrecognised
        line = self._line(result)
        if line:
            if self.bar:
                self.bar.clear()
            print(line, file=sys.stderr if result.status in ("conflict", "failed") else sys.stdout)

    def run(self, results: Iterable[Result], total: int) -> int:
        """Report each result under a progress bar, then the summary; returns the exit status."""
        self.bar = ProgressBar(total, sys.stderr, min_total=PROGRESS_MIN)
        for done, result in enumerate(results, 1):
            self.add(result)
            self.bar.update(done)
        self.bar.clear()
        words = WORDS[self.action]
        renamed = f"would be {words['renamed']}" if self.args.dry_run else words["renamed"]
        print("Summary: " + ", ".join(f"{self.counts[s]} {renamed if s == 'renamed' else w}" for s, w in words.items()))
        if self.unrecognised:
            print(
                f"warning: {self.unrecognised} new names are still not read as AI by the dataset rule (token "
                f"{self.token!r}); use a tag that contains the token, or set data.labels.token to match the tag",
                file=sys.stderr,
            )
        return 1 if self.counts["conflict"] or self.counts["failed"] else 0

    def _line(self, result: Result) -> str:
        """The line for one file: always for problems, for renames only when listing."""
        move = _show(result.src, self.root) + (f" -> {_show(result.dst, self.root)}" if result.dst else "")
        dry_run = self.args.dry_run
        if result.status == "renamed" and (self.args.verbose or dry_run):
            verb = f"would {VERBS[self.action]}" if dry_run else WORDS[self.action]["renamed"]
            warning = " (warning: still not read as AI by the dataset rule)" if result.unrecognised else ""
            return f"{verb}: {move}{warning}"
        if result.status == "conflict":
            numbered = self.action != "undo" and self.args.on_conflict == "skip"
            hint = " (--on-conflict number picks a numbered name)" if numbered else ""
            return f"{'would skip' if dry_run else 'skipped'}: {move}: {result.detail}{hint}"
        if result.status == "failed":
            return f"failed: {move}: {result.detail}"
        return ""


def _show(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
