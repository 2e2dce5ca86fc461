"""`predict.py` / `detective-predict`: parse, find the inputs and the checkpoint, predict, print.

Parsing, `--help` and input errors cost no torch import: the predictor is imported only once there is
something to predict. Exit status: 0 all predicted, 1 some inputs failed, 2 usage or checkpoint error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from detective.commands import command, program_name
from detective.predict.discover import CHECKPOINT_PATTERNS, default_output_root, expand_inputs, newest_checkpoint
from detective.predict.results import Failure
from detective.progress import ProgressBar

OK, SOME_FAILED, USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("predict"),
        description="Say what each image shows and whether it is a real photo or AI generated.",
        epilog="Exit status: 0 all images predicted, 1 some could not be read, 2 usage or checkpoint error.",
    )
    parser.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files, folders (recursive) or globs")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help=f"a best.ckpt from train.py (default: the newest under ${{DETECTIVE_OUTPUT:-outputs}}/"
        f"{{{','.join(CHECKPOINT_PATTERNS)}}})",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per image (JSON Lines)")
    parser.add_argument("--top-k", type=_positive, default=3, help="subjects listed in --json output (default 3)")
    parser.add_argument(
        "--threshold",
        type=_probability,
        help="AI probability from which an image counts as AI generated "
        "(default: the one calibrated on validation data, stored in the checkpoint)",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    parser.add_argument("--batch-size", type=_positive, default=32)
    parser.add_argument("--workers", type=int, default=None, help="image decoding threads (0: decode inline)")
    parser.add_argument(
        "--threads",
        type=_positive,
        help="torch CPU threads (default: 1 for a single image, where more only add start-up and contention; "
        "else torch's default)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    return parser


def main(argv: list[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run `predict.py` with `argv`; returns the exit status."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)

    def error(message: str) -> None:
        print(f"{parser.prog}: error: {message}", file=err, flush=True)

    checkpoint = args.checkpoint or newest_checkpoint()
    if checkpoint is None:
        root = default_output_root()
        error(
            f"no --checkpoint given and no trained checkpoint under {root}/ (looked for "
            f"{' and '.join(CHECKPOINT_PATTERNS)}); train one with `{command('train')}` or pass --checkpoint PATH"
        )
        return USAGE
    if args.checkpoint is None:
        print(f"{parser.prog}: using the newest checkpoint, {checkpoint}", file=err, flush=True)

    inputs = expand_inputs(args.inputs)
    for path, message in inputs.errors:
        report_failure(Failure(path, message), args.json, out, error)
    if not inputs.files:
        return SOME_FAILED

    from detective.memory import reusing_freed_memory
    from detective.predict.checkpoint import CheckpointError  # imports torch: only now there is work to do
    from detective.predict.predictor import Predictor

    try:
        predictor = Predictor.from_checkpoint(checkpoint, device=args.device, threshold=args.threshold)
    except (CheckpointError, ValueError) as e:
        error(str(e))
        return USAGE

    single = len(inputs.files) == 1
    threads = args.threads or (1 if single else None)
    if threads:
        import torch

        torch.set_num_threads(threads)
    workers = 0 if single else args.workers
    progress = ProgressBar(len(inputs.files), err, unit=" images", enabled=not args.no_progress)
    failed = bool(inputs.errors)
    # Several files: batches reuse their memory instead of page-faulting it in again (glibc; ~1.3x on a folder).
    with reusing_freed_memory(enabled=not single):
        for result in predictor.iter_predict(inputs.files, args.batch_size, args.top_k, workers):
            progress.clear()
            if isinstance(result, Failure):
                failed = True
                report_failure(result, args.json, out, error)
            elif args.json:
                print(json.dumps(result.as_dict()), file=out)
            else:
                print(f"{result.path}  {result.describe()}", file=out)
            progress.advance()
    progress.clear()
    out.flush()
    return SOME_FAILED if failed else OK


def run() -> None:
    """The process entry point (`predict.py`, `detective-predict`): `main`, then exit with its status.

    `predict.py folder | head`: the reader leaving early is not an error; stdout goes to /dev/null so that the
    interpreter's final flush cannot raise again."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = OK
    sys.exit(status)


def report_failure(failure: Failure, as_json: bool, out: TextIO, error: Callable[[str], None]) -> None:
    """One line on stderr; with --json also a `{"path", "error"}` record, so a consumer sees every input."""
    error(failure.error)
    if as_json:
        print(json.dumps(failure.as_dict()), file=out)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value
