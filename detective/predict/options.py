"""`predict.py`'s options and the rules between them: what may be given with what, as usage errors (exit 2).

Only argparse and path checks: parsing and `--help` import no torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from detective.commands import program_name
from detective.predict.discover import CHECKPOINT_PATTERNS, is_onnx
from detective.predict.perturb import Perturbation, parse_perturbation


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
    parser.add_argument(
        "--batch-size",
        type=_positive,
        help="images per batch (default: 8 on a CPU, where more only hold more photos in memory; 32 on a GPU)",
    )
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
