"""One detection fold trained, then predicted both ways, on a GPU in one command: train time, accuracy, photos/s.

    uv run python benchmarks/gpu.py [--data ../shared/data/realorai_dev] [--weights PATH] [--fold 0] [--epochs N]
    uv run python benchmarks/gpu.py --cpu --scratch --data DIR     # the tiny CPU form the tests run

Steps, each a fresh process timed as a whole:
1. `train.py` on fold `--fold` of `--folds` stratified folds of `--data` (benchmarks/detect.py's folds), the default
   detection recipe with `trainer=gpu trainer.precision=bf16-mixed`; timed as detect.py times a fold, the whole
   process with its test split and end-of-run pictures, so that the CPU figures of the README compare.
2. `predict.py DATA --json` (the default path) on every image of `--data`, with the fold's checkpoint: photos per
   second of the whole process, start-up included, and its peak resident memory; the test fold's accuracy at the
   stored threshold and AUROC come from these very records.
3. `predict.py DATA --out DIR --devices 1` (the Lightning path) on the same images, timed alike.
Prints one Markdown table and writes benchmarks/results/gpu.json. `--cpu` runs the same steps on the CPU in a tiny
form (1 epoch, 32 px views, no loader workers) so that the tests keep this script working on machines without a GPU;
its figures say nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]  # detective and detect.py, however this file is started

from detect import fold_root, folds_of, image_files, test_metric, whole_process  # noqa: E402

SHARED = REPO.parent / "shared"
GPU_OVERRIDES = ["trainer=gpu", "trainer.precision=bf16-mixed"]
# Small views and no loader workers: the steps run in seconds on any CPU, which is all the tiny form is for.
CPU_OVERRIDES = ["trainer=cpu", "data.image_size=32", "data.crop_fraction=1.0", "data.num_workers=0"]


@dataclass(frozen=True)
class Timed:
    """One whole process: its wall time, its peak resident memory (the largest process it waited for), what ran."""

    seconds: float
    peak_mb: float
    command: list[str]


@dataclass(frozen=True)
class PredictRun:
    """A prediction path on the folder: its process, and how many records came out of it."""

    timed: Timed
    records: list[dict[str, Any]]

    def photos_per_second(self) -> float:
        return len(self.records) / self.timed.seconds


def run_timed(cmd: list[str], log: Path, stdout: Path | None = None) -> Timed:
    """Run `cmd` from the repository, stderr (and stdout unless `stdout` is given) into `log`; a failure ends the
    benchmark with the log's tail, so that a broken step shows its own error rather than a missing file later."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as err, open(stdout, "w") if stdout else err as out:
        seconds, peak_mb, code = whole_process(cmd, out, err, env)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)}\nfailed; the end of {log}:\n{log.read_text()[-3000:]}")
    return Timed(seconds, peak_mb, cmd)


def train_fold(root: Path, run: Path, overrides: list[str]) -> Timed:
    """`train.py` on the fold's `train/` and `test/` folders, from scratch every time (an earlier run is removed)."""
    shutil.rmtree(run, ignore_errors=True)
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        f"data.root={root}",
        f"paths.output_dir={run}",
        "~callbacks.progress_bar",
        "+trainer.enable_progress_bar=false",
        *overrides,
    ]
    return run_timed(cmd, run.with_suffix(".log"))


def predict_json(checkpoint: Path, data: Path, work: Path, cpu: bool) -> PredictRun:
    """The default path, `predict.py DATA --json`: its records from stdout."""
    records = work / "predict.jsonl"
    device = ["--device", "cpu"] if cpu else []
    cmd = [sys.executable, str(REPO / "predict.py"), str(data), "--checkpoint", str(checkpoint), "--json", *device]
    timed = run_timed([*cmd, "--no-progress"], work / "predict.log", stdout=records)
    return PredictRun(timed, read_records([records]))


def predict_out(checkpoint: Path, data: Path, work: Path, cpu: bool) -> PredictRun:
    """The Lightning path, `predict.py DATA --out DIR --devices 1`, into a fresh folder: its records from the
    shards."""
    shards = work / "shards"
    shutil.rmtree(shards, ignore_errors=True)  # a resumable run would skip what an earlier one wrote
    accelerator = ["--accelerator", "cpu"] if cpu else []
    cmd = [sys.executable, str(REPO / "predict.py"), str(data), "--checkpoint", str(checkpoint)]
    cmd += ["--out", str(shards), "--devices", "1", *accelerator, "--no-progress"]
    timed = run_timed(cmd, work / "predict_out.log")
    return PredictRun(timed, read_records(sorted(shards.glob("part-*.jsonl"))))


def read_records(files: list[Path]) -> list[dict[str, Any]]:
    """JSON Lines records of the files, in order; an unreadable image's record is an error here: every image of the
    folder is expected to be predicted."""
    records = [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]
    if failed := [r for r in records if "error" in r]:
        raise SystemExit(f"{len(failed)} images could not be predicted, e.g. {failed[0]}")
    return records


def fold_scores(records: list[dict[str, Any]], test: list[Path]) -> dict[str, Any]:
    """Accuracy at the stored threshold and AUROC of the records of the test fold's images (AI: an `ai` or `1_fake`
    folder), as detect.py judges a fold."""
    from detective.evaluation.metrics import source_metrics

    by_path = {Path(r["path"]).resolve(): r for r in records}
    judged = [by_path[f.resolve()] for f in test]
    truth = [int(f.parent.name in ("ai", "1_fake")) for f in test]
    metrics = source_metrics([r["ai_probability"] for r in judged], truth, judged[0]["threshold"])
    return {"images": len(test), "accuracy": metrics["accuracy"], "auroc": metrics["auroc"]}


def machine() -> dict[str, Any]:
    """What ran it: the figures mean little without the device and the load beside them."""
    import torch

    return {
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": os.getloadavg(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def train_overrides(args: argparse.Namespace) -> list[str]:
    """The recipe's overrides: the device's, the backbone weights (or none), the epochs when given."""
    overrides = list(CPU_OVERRIDES if args.cpu else GPU_OVERRIDES)
    weights = None if args.scratch else args.weights
    overrides.append(f"model.weights_path={weights}" if weights else "model.pretrained=false")
    if epochs := args.epochs or (1 if args.cpu else None):
        overrides.append(f"trainer.max_epochs={epochs}")
    return overrides + args.set


def table(report: dict[str, Any]) -> str:
    """The report as one Markdown table."""
    train, scores = report["train"], report["test_fold"]
    rows = [
        ("train fold " + str(report["fold"]), f"{train['seconds']:.1f} s", " ".join(train["overrides"])),
        (
            f"test fold ({scores['images']} images): accuracy / AUROC",
            f"{scores['accuracy']:.3f} / {_maybe(scores['auroc'])}",
            f"train.py's own test figures: {_maybe(train['test_accuracy'])} / {_maybe(train['test_auroc'])}",
        ),
    ]
    paths = {"predict": "`predict.py DIR --json`", "predict_out": "`predict.py DIR --out DIR --devices 1`"}
    for key, name in paths.items():
        run = report[key]
        detail = f"{run['images']} photos in {run['seconds']:.1f} s, start-up included; peak {run['peak_mb']:,.0f} MB"
        rows.append((name, f"{run['photos_per_second']:.1f} photos/s", detail))
    lines = ["| step | figure | detail |", "|---|---|---|"]
    return "\n".join([*lines, *(f"| {a} | {b} | {c} |" for a, b, c in rows)])


def _maybe(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def predict_row(run: PredictRun) -> dict[str, Any]:
    return {
        "images": len(run.records),
        "photos_per_second": run.photos_per_second(),
        **asdict(run.timed),
    }


def predict_both(checkpoint: Path, args: argparse.Namespace, images: int) -> tuple[PredictRun, PredictRun]:
    """The default path, then the Lightning path, on all of `--data`; each must give a record per image."""
    print(f"predicting {images} images: --json, then --out ...", flush=True)
    plain = predict_json(checkpoint, args.data, args.workdir, args.cpu)
    sharded = predict_out(checkpoint, args.data, args.workdir, args.cpu)
    for name, predicted in (("--json", plain), ("--out", sharded)):
        if len(predicted.records) != images:
            raise SystemExit(f"predict.py {name} gave {len(predicted.records)} records for {images} images")
    return plain, sharded


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """The three steps on one fold; the report `table` prints and the JSON holds."""
    start = time.perf_counter()
    files = image_files(args.data)
    fold = folds_of(files, args.folds)
    root = fold_root(args.data, files, fold, args.fold, args.workdir / "folds")
    run = args.workdir / "runs" / f"fold{args.fold}"
    overrides = train_overrides(args)
    print(f"training fold {args.fold} of {args.data} ({len(files)} images) ...", flush=True)
    trained = train_fold(root, run, overrides)
    checkpoint = run / "checkpoints" / "best.ckpt"
    plain, sharded = predict_both(checkpoint, args, len(files))
    test = [f for f, k in zip(files, fold, strict=True) if k == args.fold]
    return {
        "mode": "cpu (tiny: the figures say nothing about speed)" if args.cpu else "gpu",
        "machine": machine(),
        "data": str(args.data),
        "fold": args.fold,
        "folds": args.folds,
        "train": {
            **asdict(trained),
            "overrides": overrides,
            "test_accuracy": test_metric(run, "test/source_acc"),
            "test_auroc": test_metric(run, "test/source_auroc"),
        },
        "test_fold": fold_scores(plain.records, test),
        "predict": predict_row(plain),
        "predict_out": predict_row(sharded),
        "total_seconds": time.perf_counter() - start,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "realorai_dev")
    default_weights = SHARED / "weights" / "mobilenet_v2_imagenet_coral.pth"
    parser.add_argument(
        "--weights",
        type=Path,
        default=default_weights if default_weights.is_file() else None,
        help=f"ImageNet backbone weights, a torchvision state dict (default: {default_weights}, where it exists)",
    )
    parser.add_argument("--scratch", action="store_true", help="random backbone weights (model.pretrained=false)")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, help="trainer.max_epochs (default: the config's; --cpu: 1)")
    parser.add_argument("--set", action="append", default=[], metavar="OVERRIDE", help="one more train.py override")
    parser.add_argument("--cpu", action="store_true", help="the tiny CPU form: checks the script, measures nothing")
    parser.add_argument("--workdir", type=Path, default=RESULTS / "gpu")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu.json")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"--data {args.data}: no such folder")
    if not args.cpu and not args.scratch and args.weights is None:
        parser.error("no --weights: the fold's figures need the ImageNet backbone weights (--scratch: random ones)")
    if not args.cpu:
        import torch

        if not torch.cuda.is_available():
            parser.error("no CUDA GPU is visible here; --cpu runs the tiny CPU form")
    args.data = args.data.resolve()  # so that the records' paths and the fold's files compare equal
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = benchmark(args)
    print("\n" + table(report))
    print(f"\n{report['total_seconds']:.0f} s in all; {report['mode']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
