"""`predict.py`: parse, find the inputs and the checkpoint, predict, print; or export the checkpoint's net to ONNX.

Parsing, `--help` and input errors cost no torch import: the predictor is imported only once there is
something to predict, and with an exported `.onnx` model torch is never imported. Exit status: 0 all predicted,
1 some inputs failed, 2 usage or checkpoint error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from detective.predict.discover import (
    CHECKPOINT_PATTERNS,
    CheckpointError,
    default_output_root,
    expand_inputs,
    is_onnx,
    newest_checkpoint,
)
from detective.progress import ProgressBar

if TYPE_CHECKING:
    from detective.predict.batching import BatchPredictor

PROG = "predict.py"
OK, SOME_FAILED, USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Say what each image shows and whether it is a real photo or AI generated.",
        epilog="Exit status: 0 all images predicted, 1 some could not be read, 2 usage or checkpoint error.",
    )
    parser.add_argument("inputs", nargs="*", metavar="IMAGE", help="image files, folders (recursive) or globs")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help=f"a best.ckpt from train.py, or a model.onnx from --export, predicted with onnxruntime and no torch "
        f"(default: the newest best.ckpt under ${{DETECTIVE_OUTPUT:-outputs}}/{{{','.join(CHECKPOINT_PATTERNS)}}})",
    )
    parser.add_argument(
        "--export",
        type=Path,
        metavar="MODEL.onnx",
        help="write the checkpoint's net, with its settings, as an ONNX model that --checkpoint then takes "
        "(predicts nothing; needs `pip install 'detective[onnx]'`)",
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
        help="CPU threads of torch, or of onnxruntime with an .onnx model (default: 1 for a single image, where "
        "more only add start-up and contention; else the library's default)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    return parser


def main(argv: list[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run `predict.py` with `argv`; returns the exit status."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.export is None and not args.inputs:
        parser.error("the following arguments are required: IMAGE (or --export MODEL.onnx)")
    if args.export is not None and (args.inputs or not is_onnx(args.export)):
        parser.error("--export MODEL.onnx writes the model and predicts nothing: name it *.onnx, give no images")

    def error(message: str) -> None:
        print(f"{PROG}: error: {message}", file=err, flush=True)

    checkpoint = args.checkpoint or newest_checkpoint()
    if checkpoint is None:
        root = default_output_root()
        error(
            f"no --checkpoint given and no trained checkpoint under {root}/ (looked for "
            f"{' and '.join(CHECKPOINT_PATTERNS)}); train one with `python train.py` or pass --checkpoint PATH"
        )
        return USAGE
    if args.checkpoint is None:
        print(f"{PROG}: using the newest checkpoint, {checkpoint}", file=err, flush=True)
    if args.export is not None:
        return export(checkpoint, args.export, args.threshold, out, error)

    inputs = expand_inputs(args.inputs)
    for path, message in inputs.errors:
        report_failure(path, message, args.json, out, error)
    if not inputs.files:
        return SOME_FAILED

    from detective.memory import reusing_freed_memory
    from detective.predict.onnx_runtime import MissingExtraError
    from detective.predict.results import Failure

    single = len(inputs.files) == 1
    try:
        predictor = open_predictor(checkpoint, args.device, args.threshold, args.threads or (1 if single else None))
    except (CheckpointError, MissingExtraError, ValueError) as e:
        error(str(e))
        return USAGE

    workers = 0 if single else args.workers
    progress = ProgressBar(len(inputs.files), err, unit=" images", enabled=not args.no_progress)
    failed = bool(inputs.errors)
    # Several files: batches reuse their memory instead of page-faulting it in again (glibc; ~1.3x on a folder).
    with reusing_freed_memory(enabled=not single):
        for result in predictor.iter_predict(inputs.files, args.batch_size, args.top_k, workers):
            progress.clear()
            if isinstance(result, Failure):
                failed = True
                report_failure(result.path or "", result.error, args.json, out, error)
            elif args.json:
                print(json.dumps(result.as_dict()), file=out)
            else:
                print(f"{result.path}  {result.describe()}", file=out)
            progress.advance()
    progress.clear()
    out.flush()
    return SOME_FAILED if failed else OK


def open_predictor(checkpoint: Path, device: str, threshold: float | None, threads: int | None) -> BatchPredictor:
    """onnxruntime's predictor for an exported `.onnx` model (torch never imported), else the PyTorch one."""
    if is_onnx(checkpoint):
        from detective.predict.onnx_runtime import OnnxPredictor

        return OnnxPredictor.from_file(checkpoint, device=device, threshold=threshold, threads=threads)
    import torch  # only now there is work to do

    from detective.predict.predictor import Predictor

    if threads:
        torch.set_num_threads(threads)
    return Predictor.from_checkpoint(checkpoint, device=device, threshold=threshold)


def export(
    checkpoint: Path, destination: Path, threshold: float | None, out: TextIO, error: Callable[[str], None]
) -> int:
    """`--export`: write the ONNX model (with `--threshold` in place of the calibrated one, if given) and say what
    it holds; exit status 2 (nothing written) on any error."""
    from detective.predict.onnx_runtime import MissingExtraError

    if is_onnx(checkpoint):
        error(f"--export takes a .ckpt written by train.py as --checkpoint, not {checkpoint}")
        return USAGE
    try:
        from detective.predict.onnx_export import export_onnx  # imports torch

        done = export_onnx(checkpoint, destination, threshold)
    except (CheckpointError, MissingExtraError, ValueError) as e:
        error(str(e))
        return USAGE
    print(
        f"wrote {done.path}: {done.subjects} subjects, {done.image_size} px, settings from {checkpoint}; agrees "
        f"with its PyTorch net to {done.max_difference:.1e}; predict with: {PROG} IMAGE --checkpoint {done.path}",
        file=out,
    )
    return OK


def report_failure(path: str, message: str, as_json: bool, out: TextIO, error: Callable[[str], None]) -> None:
    """One line on stderr; with --json also a `{"path", "error"}` record, so a consumer sees every input."""
    error(message)
    if as_json:
        print(json.dumps({"path": path, "error": message}), file=out)


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
