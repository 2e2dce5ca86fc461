"""`predict.py` / `detective-predict`: parse, find the inputs and the checkpoint, predict, print; or export the
checkpoint's net to ONNX.

Parsing, `--help` and input errors cost no torch import: the predictor is imported only once there is
something to predict, and with an exported `.onnx` model torch is never imported; Lightning only with `--out`
(`distributed.py`). Exit status: 0 all predicted, 1 some inputs failed, 2 usage or checkpoint error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from detective.commands import command, program_name
from detective.constants import PREDICT_SPIN_COUNT
from detective.predict.discover import (
    CHECKPOINT_PATTERNS,
    CheckpointError,
    Inputs,
    default_output_root,
    expand_inputs,
    is_onnx,
    newest_checkpoint,
)
from detective.predict.options import build_parser, check_args
from detective.predict.results import Failure
from detective.progress import ProgressBar, is_terminal

if TYPE_CHECKING:
    from detective.predict.batching import BatchPredictor

OK, SOME_FAILED, USAGE = 0, 1, 2


def first_process() -> bool:
    """False in the other processes of a many-process run (torchrun, SLURM, Lightning's own launcher), so that a
    line meant once is printed once."""
    return all(os.environ.get(rank, "0") == "0" for rank in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"))


def main(argv: list[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run `predict.py` with `argv`; returns the exit status."""
    os.environ.setdefault("GOMP_SPINCOUNT", str(PREDICT_SPIN_COUNT))  # read once, when torch loads libgomp
    out, err = stdout or sys.stdout, stderr or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)

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
    if args.checkpoint is None and first_process():
        print(f"{parser.prog}: using the newest checkpoint, {checkpoint}", file=err, flush=True)
    if args.export is not None:
        return export(checkpoint, args.export, args.threshold, out, error)
    if args.evaluate:
        return evaluate(args, checkpoint, out, err, error)
    if args.explain is not None and checkpoint.suffix == ".onnx":
        error("--explain needs a .ckpt checkpoint")
        return USAGE

    inputs = expand_inputs(args.inputs)
    if args.out is not None and inputs.files:
        return predict_sharded(args, checkpoint, inputs, err, error)
    for path, message in inputs.errors:
        report_failure(Failure(path, message), args.json, out, error)
    if not inputs.files:
        return SOME_FAILED

    from detective.predict.onnx_runtime import MissingExtraError

    single = len(inputs.files) == 1
    try:
        predictor = open_predictor(
            checkpoint, args.device, args.threshold, args.uncertain, args.threads or (1 if single else None)
        )
    except (CheckpointError, MissingExtraError, ValueError) as e:
        error(str(e))
        return USAGE
    explain = None
    if args.explain is not None:
        from detective.predict.explain import Explainer  # brings matplotlib: only when asked for

        try:
            explain = Explainer(predictor, args.explain)
        except OSError as e:
            error(f"--explain {args.explain}: cannot create this folder ({e.strerror}); choose another")
            return USAGE

    workers = 0 if single else args.workers
    progress = ProgressBar(len(inputs.files), err, unit=" images", enabled=not args.no_progress)
    failed = bool(inputs.errors)
    results = predictor.iter_predict(inputs.files, args.batch_size, args.top_k, workers)
    for result in explain(results) if explain else results:
        progress.clear()
        if isinstance(result, Failure):
            failed = True
            report_failure(result, args.json, out, error)
        elif args.json:
            print(json.dumps(result.as_dict()), file=out)
        else:
            print(f"{result.path}  {result.describe()}", file=out)
            for head, picture in (result.explain or {}).items():
                print(f"  {head} heatmap: {picture}", file=out)
        progress.advance()
    progress.clear()
    out.flush()
    return SOME_FAILED if failed else OK


def open_predictor(
    checkpoint: Path, device: str, threshold: float | None, uncertain: float, threads: int | None
) -> BatchPredictor:
    """onnxruntime's predictor for an exported `.onnx` model (torch never imported), else the PyTorch one."""
    if is_onnx(checkpoint):
        from detective.predict.onnx_runtime import OnnxPredictor

        return OnnxPredictor.from_file(checkpoint, device, threshold, uncertain, threads)
    import torch  # only now there is work to do

    from detective.predict.predictor import Predictor

    if threads:
        torch.set_num_threads(threads)
    return Predictor.from_checkpoint(checkpoint, device=device, threshold=threshold, uncertain=uncertain)


def predict_sharded(
    args: argparse.Namespace, checkpoint: Path, inputs: Inputs, err: TextIO, error: Callable[[str], None]
) -> int:
    """`--out`: predict through Lightning into shards, then say what the shards hold. Every process of the run
    goes through here; only rank 0 reports."""
    from detective.predict.batching import default_workers
    from detective.predict.checkpoint import read_checkpoint

    try:
        read_checkpoint(checkpoint)  # a bad one: one line here rather than a traceback from every process
    except CheckpointError as e:
        error(str(e))
        return USAGE
    from detective.logs import configure_output
    from detective.predict.distributed import DeviceError, is_first_process, predict_to_shards

    configure_output()
    if is_first_process():  # the other processes' lines would repeat it
        for _, message in inputs.errors:
            error(message)
    try:
        summary = predict_to_shards(
            checkpoint,
            inputs.files,
            args.out,
            devices=args.devices or 1,
            accelerator=args.accelerator or "auto",
            num_nodes=args.num_nodes or 1,
            shard_size=args.shard_size or 5000,
            workers=default_workers() if args.workers is None else args.workers,
            progress=not args.no_progress and is_terminal(err),
            batch_size=args.batch_size,
            top_k=args.top_k,
            threshold=args.threshold,
            uncertain=args.uncertain,
            threads=args.threads,
        )
    except DeviceError as e:
        error(f"{e} (--accelerator {args.accelerator}, --devices {args.devices or 1})")
        return USAGE
    if summary is None:  # not rank 0: rank 0 reports for all
        return OK
    for failure in summary.failures:
        error(failure.error)
    print(f"{program_name('predict')}: {summary.describe()}", file=err, flush=True)
    return OK if summary.complete and not inputs.errors else SOME_FAILED


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
        f"wrote {done.path}: {done.describe()}, settings from {checkpoint}; agrees with its PyTorch net to "
        f"{done.max_difference:.1e}; predict with: {command('predict')} IMAGE --checkpoint {done.path}",
        file=out,
    )
    return OK


def evaluate(args: argparse.Namespace, checkpoint: Path, out: TextIO, err: TextIO, error: Callable[[str], None]) -> int:
    """`--evaluate`: the report on stdout (one JSON object with --json), pictures with --plots."""
    from detective.evaluation.text import format_evaluation
    from detective.predict.checkpoint import read_checkpoint
    from detective.predict.evaluate import evaluate_folder, label_rule
    from detective.predict.predictor import Predictor

    try:
        hparams = read_checkpoint(checkpoint).hparams
        predictor = Predictor.from_checkpoint(checkpoint, args.device, args.threshold, uncertain=args.uncertain)
        if args.plots is not None:
            args.plots.mkdir(parents=True, exist_ok=True)  # before the work, not after it
    except (CheckpointError, ValueError) as e:
        error(str(e))
        return USAGE
    except OSError as e:
        error(f"--plots {args.plots}: cannot create this folder ({e.strerror}); choose another")
        return USAGE
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    bar: ProgressBar | None = None

    def show(done: int, total: int) -> None:  # the total is known once the folder is scanned
        nonlocal bar
        bar = bar or ProgressBar(total, err, unit=" images", enabled=not args.no_progress)
        bar.total = total
        bar.update(done)

    perturbations = [p for group in args.perturb or () for p in group]
    evaluation = evaluate_folder(
        args.inputs[0],
        predictor,
        label_rule(hparams, args.token),
        subject_head=bool(predictor.subjects),
        perturbations=perturbations,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=show,
    )
    if bar is not None:
        bar.clear()
    evaluation.report = {"checkpoint": str(checkpoint), **evaluation.report}
    if args.plots is not None and evaluation.records:
        from detective.evaluation.plots import write_plots  # matplotlib: only when pictures are asked for

        write_plots(evaluation, args.plots)
    report = evaluation.report
    print(json.dumps(report) if args.json else format_evaluation(report), file=out, flush=True)
    if not report["images"]:
        error(f"no readable, labelled images under {report['root']}: expected <subject>/<image> (README)")
    return SOME_FAILED if report["excluded"] or not report["images"] else OK


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
