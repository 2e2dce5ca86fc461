"""How well the source head detects AI images in real photos: recipes side by side, cross-validated.

    uv run python benchmarks/detect.py --weights ../shared/weights/mobilenet_v2_imagenet_coral.pth
        [--data ../shared/data/realorai_dev] [--folds 3] [--recipes original,resized,native,taps,default,shortcut]
        [--transfer ../shared/data/real_vs_ai_sample] [--subjects ../shared/data/cats_dogs_real] [--epochs N]

Each recipe is `train.py` with a few overrides, run as its own process on every fold: the data set is split into
`--folds` stratified folds by a hash of each file's name; a fold's files become the test split, the rest train (with
the validation split carved out of it by `data.val_fraction`, as `train.py` does). Every best checkpoint is then
judged on its test fold by `Predictor`, as `predict.py` would, with the views stored in it and, for native-crop
recipes, also with a single centre crop (what one crop sees, against the grid). Optionally a recipe is trained on
`--transfer` and judged on all of `--data` (another collection, other generators), and trained on `--subjects` (real
cat/dog photos) to show the subject head does not suffer. Prints a table of means +- standard deviations over folds
and adds its rows to benchmarks/results/detect.json (`--variant NAME=OVERRIDES` runs one more recipe).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))

# name -> (what it is, train.py overrides)
RECIPES: dict[str, tuple[str, list[str]]] = {
    "original": (
        "the original's: frozen ImageNet features, downscaled view",
        ["experiment=frozen", "data.source_view=resized"],
    ),
    "resized": (
        "fine-tuned, downscaled view (before native crops)",
        ["experiment=finetune", "data.source_view=resized", "model.source_taps=[]"],
    ),
    "native": (
        "fine-tuned, native crops, source head on the pooled last block",
        ["experiment=finetune", "model.source_taps=[]"],
    ),
    "taps": ("fine-tuned, native crops, source head on blocks 3, 6, 10's statistics", ["experiment=finetune"]),
    "taps336": (
        "frozen, blocks 3, 6, 10's mean and std, each image's grid scored as one (the default before)",
        ["model.source_taps=[3,6,10]", "model.source_statistics=[mean,std]", "model.source_loss=image"],
    ),
    "default": ("frozen, blocks 0-10's mean, std and detail, every crop of the grid scored, the final epoch kept", []),
    "bestepoch": ("the same, the best epoch by val/score with early stopping (callbacks=best)", ["callbacks=best"]),
    "shortcut": ("default + JPEG/rescale augmentation of both sources", ["experiment=shortcut_proof"]),
}


@dataclass(frozen=True)
class Scores:
    accuracy: float
    auroc: float


def folds_of(files: list[Path], k: int) -> list[int]:
    """A fold per file, stratified by source folder, from a hash of the file name (the same on every machine)."""
    fold = [0] * len(files)
    by_source: dict[str, list[int]] = {}
    for i, f in enumerate(files):
        by_source.setdefault(f.parent.name, []).append(i)
    for members in by_source.values():
        members.sort(key=lambda i: hashlib.sha256(files[i].name.encode()).hexdigest())
        for rank, i in enumerate(members):
            fold[i] = rank % k
    return fold


def image_files(root: Path) -> list[Path]:
    from detective.data.labels import is_image_name

    return sorted(p for p in root.rglob("*") if p.is_file() and is_image_name(p.name))


def fold_root(data: Path, files: list[Path], fold: list[int], k: int, workdir: Path) -> Path:
    """`workdir/fold<k>/{train,test}/<source folder>/` of symlinks: the split layout train.py reads as given."""
    root = workdir / f"fold{k}"
    for f, fk in zip(files, fold, strict=True):
        link = root / ("test" if fk == k else "train") / f.relative_to(data)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(f.resolve())
    return root


# Runs a command and writes its peak resident KB to a file. It stands between this process and the command because
# Linux counts the memory of the process that forks as the child's peak until it execs (a benchmark that has
# imported torch would put a floor of its own size under every figure); this launcher is small.
LAUNCHER = (
    "import os, subprocess, sys; child = subprocess.Popen(sys.argv[2:]); _, status, usage = os.wait4(child.pid, 0); "
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss)); sys.exit(os.waitstatus_to_exitcode(status))"
)


def whole_process(
    cmd: list[str], stdout: Any, stderr: Any, env: dict[str, str] | None = None
) -> tuple[float, float, int]:
    """Run `cmd` from the repository as one fresh process: its wall seconds, its peak resident MB (the kernel's
    figure for it and the children it waited for, `wait4`) and its exit code."""
    with tempfile.TemporaryDirectory() as folder:
        peak = Path(folder) / "peak"
        start = time.perf_counter()
        code = subprocess.call(
            [sys.executable, "-I", "-c", LAUNCHER, str(peak), *cmd], cwd=REPO, env=env, stdout=stdout, stderr=stderr
        )
        seconds = time.perf_counter() - start
        return seconds, int(peak.read_text()) / 1024 if peak.exists() else 0.0, code


def train_run(root: Path, out: Path, overrides: list[str], weights: Path, epochs: int | None) -> float:
    """One `train.py` process; returns its wall time in seconds. A run that already finished (its time recorded
    beside it) is not trained again, so an interrupted benchmark resumes where it stopped."""
    done = out.with_suffix(".seconds")
    if done.is_file() and (out / "checkpoints" / "best.ckpt").is_file():
        return float(done.read_text())
    cmd = [
        sys.executable,
        str(REPO / "train.py"),
        f"data.root={root}",
        f"model.weights_path={weights}",
        f"paths.output_dir={out}",
        "~callbacks.progress_bar",
        "+trainer.enable_progress_bar=false",
        *overrides,
    ]
    if epochs:
        cmd.append(f"trainer.max_epochs={epochs}")
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(out.with_suffix(".log"), "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    seconds = time.perf_counter() - start
    done.write_text(f"{seconds:.1f}")
    return seconds


def judge(checkpoint: Path, files: list[Path], source_crops: int | None = None) -> Scores:
    """Source accuracy at the stored threshold and AUROC of `Predictor` on `files` (AI = under an `ai` folder)."""
    import torch
    from torchmetrics.functional.classification import binary_auroc

    from detective.data.views import eval_views
    from detective.predict.predictor import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    if source_crops is not None:
        hp = torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"]
        predictor.views = eval_views(
            hp["image_size"],
            hp["crop_fraction"],
            hp["source_view"],
            hp["source_crop"],
            source_crops,
            subject_head=bool(predictor.subjects),
        )
    results = predictor.predict(files)
    probs = torch.tensor([r.ai_probability for r in results])
    truth = torch.tensor([f.parent.name in ("ai", "1_fake") for f in files])
    accuracy = float(((probs >= predictor.threshold) == truth).float().mean())
    return Scores(accuracy, float(binary_auroc(probs, truth.long())))


def test_metric(run: Path, name: str) -> float | None:
    import csv

    rows = [r for r in csv.DictReader((run / "logs" / "metrics.csv").open()) if r.get(name)]
    return float(rows[-1][name]) if rows else None


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} +- {spread:.3f}"


def folds_parser(doc: str) -> argparse.ArgumentParser:
    """The options every cross-validated benchmark here takes: data set, backbone weights, number of folds."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "realorai_dev")
    parser.add_argument(
        "--weights", type=Path, default=REPO.parent / "shared" / "weights" / "mobilenet_v2_imagenet_coral.pth"
    )
    parser.add_argument("--folds", type=int, default=3)
    return parser


def main() -> None:
    parser = folds_parser(__doc__)
    parser.add_argument("--only-folds", help="run these folds only, e.g. 0,2 ('': none; default: all)")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=OVERRIDES",
        help="one more recipe to run, e.g. 'crops4=data.source_train_crops=4 trainer.max_epochs=30' (repeatable)",
    )
    parser.add_argument("--epochs", type=int, help="trainer.max_epochs for every run (default: the config's)")
    parser.add_argument("--transfer", type=Path, help="also train on this folder and judge on all of --data")
    parser.add_argument("--subjects", type=Path, help="also train on this subject-folder set: subject accuracy")
    parser.add_argument("--workdir", type=Path, default=RESULTS / "detect")
    args = parser.parse_args()

    files = image_files(args.data)
    fold = folds_of(files, args.folds)
    args.workdir.mkdir(parents=True, exist_ok=True)
    recipes = {name: RECIPES[name] for name in args.recipes.split(",") if name}
    for variant in args.variant:
        name, _, overrides = variant.partition("=")
        recipes[name] = (f"variant: {overrides}", overrides.split())
    saved = RESULTS / "detect.json"
    table: dict[str, dict[str, Any]] = {}
    folds = args.only_folds.split(",") if args.only_folds is not None else range(args.folds)
    chosen = [int(f) for f in folds if f != ""]
    for name, (about, overrides) in recipes.items():
        previous = json.loads(saved.read_text()).get(name, {}) if saved.is_file() else {}
        row: dict[str, Any] = {**previous, "about": about, "overrides": overrides}  # a --transfer run keeps the folds
        row["folds"] = [f for f in row.get("folds", []) if f.get("fold") not in chosen]  # the folds run again go
        for k in chosen:
            root = fold_root(args.data, files, fold, k, args.workdir / "folds")
            out = args.workdir / "runs" / f"{name}-fold{k}"
            seconds = train_run(root, out, overrides, args.weights, args.epochs)
            best = out / "checkpoints" / "best.ckpt"
            test = [f for f, fk in zip(files, fold, strict=True) if fk == k]
            result = {
                "fold": k,
                "seconds": seconds,
                "judged": judge(best, test).__dict__,
                "reported_acc": test_metric(out, "test/source_acc"),
            }
            if "source_view=resized" not in " ".join(overrides):
                result["one_crop"] = judge(best, test, source_crops=1).__dict__
            row["folds"] = sorted([*row["folds"], result], key=lambda f: f.get("fold", -1))
            print(f"{name} fold {k}: {result}", flush=True)
        if args.transfer:
            out = args.workdir / "runs" / f"{name}-transfer"
            train_run(args.transfer, out, overrides, args.weights, args.epochs)
            row["transfer"] = judge(out / "checkpoints" / "best.ckpt", files).__dict__
        if args.subjects:
            out = args.workdir / "runs" / f"{name}-subjects"
            train_run(args.subjects, out, overrides, args.weights, args.epochs)
            row["subject_acc"] = test_metric(out, "test/subject_acc")
        table[name] = row
        table = {**(json.loads(saved.read_text()) if saved.is_file() else {}), name: row}  # others may have written
        saved.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no results folder yet
        saved.write_text(json.dumps(table, indent=2))
    print_table(table)


def print_table(table: dict[str, dict[str, Any]]) -> None:
    columns = ["recipe", "source acc", "source AUROC", "1 crop: acc / AUROC", "train time (s)", "transfer acc / AUROC"]
    print("\n| " + " | ".join([*columns, "subject acc (cats/dogs)"]) + " |")
    print("|---|---|---|---|---|---|---|")
    for name, row in table.items():
        folds = row.get("folds", [])
        acc = mean_std([f["judged"]["accuracy"] for f in folds])
        auroc = mean_std([f["judged"]["auroc"] for f in folds])
        one = [f["one_crop"] for f in folds if "one_crop" in f]
        one_crop = f"{mean_std([o['accuracy'] for o in one])} / {mean_std([o['auroc'] for o in one])}" if one else "-"
        seconds = statistics.median(f["seconds"] for f in folds) if folds else float("nan")
        transfer = row.get("transfer")
        moved = f"{transfer['accuracy']:.3f} / {transfer['auroc']:.3f}" if transfer else "-"
        subject = f"{row['subject_acc']:.3f}" if row.get("subject_acc") is not None else "-"
        print(f"| {name}: {row['about']} | {acc} | {auroc} | {one_crop} | {seconds:.0f} | {moved} | {subject} |")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
