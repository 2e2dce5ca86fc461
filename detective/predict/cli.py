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
from detective.predict.discover import (
    CHECKPOINT_PATTERNS,
    CheckpointError,
    Inputs,
    default_output_root,
    expand_inputs,
    is_onnx,
    newest_checkpoint,
)
from detective.predict.perturb import Perturbation, parse_perturbation
from detective.predict.results import Failure
from detective.progress import ProgressBar, is_terminal

if TYPE_CHECKING:
    from detective.predict.batching import BatchPredictor

OK, SOME_FAILED, USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("predict"),
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
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="image decoding threads; with --out, DataLoader worker processes per device (0: decode inline)",
    )
    parser.add_argument(
        "--threads",
        type=_positive,
        help="CPU threads of torch, or of onnxruntime with an .onnx model (default: 1 for a single image, where "
        "more only add start-up and contention; with --out on CPUs, the cores shared among the processes; else the "
        "library's default)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    parser.add_argument(
        "--explain",
        type=Path,
        metavar="DIR",
        help="also write why, per image: <name>.subject.png and <name>.source.png, heatmaps of where each head "
        "found its evidence (Grad-CAM), with the source head's crops and their AI probabilities",
    )
    parser.add_argument(
        "--uncertain",
        type=_probability,
        default=0.0,
        metavar="BAND",
        help="say 'uncertain' instead of real/AI when the AI probability is less than BAND from the threshold",
    )
    scale = parser.add_argument_group(
        "many processes",
        "predict a big folder through Lightning, one process per device, into JSON Lines shards; a rerun of the "
        "same command finishes what a killed one left (README)",
    )
    scale.add_argument("--out", type=Path, metavar="DIR", help="write the records to DIR/part-<rank>-<n>.jsonl")
    scale.add_argument("--devices", type=_positive, metavar="N", help="processes (devices) per machine (default 1)")
    scale.add_argument(
        "--accelerator",
        choices=("auto", "cpu", "gpu", "cuda", "mps"),
        help="what each process predicts on (default auto: a GPU where there is one)",
    )
    scale.add_argument("--num-nodes", type=_positive, metavar="N", help="machines, under torchrun or SLURM (default 1)")
    scale.add_argument("--shard-size", type=_positive, metavar="N", help="records per shard (default 5000)")
    evaluation = parser.add_argument_group(
        "evaluation", "score the checkpoint on one labelled folder, labelled as training labels it (README)"
    )
    evaluation.add_argument("--evaluate", action="store_true", help="IMAGE is one labelled folder: print metrics")
    evaluation.add_argument(
        "--perturb",
        nargs="+",
        type=_perturbation,
        metavar="SPEC",
        help="also score the source head after each perturbation, in memory: jpeg=90,70,50 resize=0.5 blur=1.0",
    )
    evaluation.add_argument("--plots", type=Path, metavar="DIR", help="write the evaluation's pictures (PNG) here")
    evaluation.add_argument("--token", help="the AI token of file names (default: the checkpoint's, else 'ai')")
    return parser


def first_process() -> bool:
    """False in the other processes of a many-process run (torchrun, SLURM, Lightning's own launcher), so that a
    line meant once is printed once."""
    return all(os.environ.get(rank, "0") == "0" for rank in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"))


def main(argv: list[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run `predict.py` with `argv`; returns the exit status."""
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


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors (exit 2): --export names an .onnx file and takes no images, anything else needs images;
    evaluation options need --evaluate, and --evaluate needs exactly one folder and a .ckpt."""
    if args.export is None and not args.inputs:
        parser.error("the following arguments are required: IMAGE (or --export MODEL.onnx)")
    if args.export is not None and (args.inputs or args.evaluate or not is_onnx(args.export)):
        parser.error("--export MODEL.onnx writes the model and predicts nothing: name it *.onnx, give no images")
    given = [name for name in ("perturb", "plots", "token") if getattr(args, name) is not None]
    if given and not args.evaluate:
        parser.error(f"--{given[0]} needs --evaluate")
    if args.evaluate and args.explain is not None:
        parser.error("--explain goes with plain prediction, not --evaluate")
    if args.evaluate and (len(args.inputs) != 1 or not Path(args.inputs[0]).expanduser().is_dir()):
        parser.error(f"--evaluate takes one folder of labelled images, got {' '.join(args.inputs)}")
    scale = [name for name in ("devices", "accelerator", "num_nodes", "shard_size") if getattr(args, name) is not None]
    if scale and args.out is None:
        parser.error(f"--{scale[0].replace('_', '-')} needs --out DIR (predicting through Lightning into shards)")
    if args.out is not None and (args.evaluate or args.explain is not None or args.export is not None):
        parser.error("--out goes with plain prediction, not --evaluate, --explain or --export")
    if args.out is not None and args.device != "auto":
        parser.error("--out takes --accelerator and --devices, not --device")
    if args.out is not None and args.checkpoint is not None and is_onnx(args.checkpoint):
        parser.error("--out predicts with a .ckpt through Lightning, not with an ONNX export")
    if args.evaluate and args.checkpoint is not None and is_onnx(args.checkpoint):
        parser.error("--evaluate reads the label rule saved in a .ckpt: give the checkpoint, not the ONNX export")


def evaluate(args: argparse.Namespace, checkpoint: Path, out: TextIO, err: TextIO, error: Callable[[str], None]) -> int:
    """`--evaluate`: the report on stdout (one JSON object with --json), pictures with --plots."""
    from detective.evaluation.text import format_report
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
    print(json.dumps(report) if args.json else format_report(report), file=out, flush=True)
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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _perturbation(text: str) -> list[Perturbation]:
    try:
        return parse_perturbation(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value
