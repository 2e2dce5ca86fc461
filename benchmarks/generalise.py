"""Does the source head detect generators it never saw? Leave one collection out, over several collections.

    uv run python benchmarks/generalise.py [--collections DIR,DIR,...] [--recipes default] [--within]
        [--variant NAME=OVERRIDES] [--epochs N] [--weights FILE]

For each collection (default: the three under ../shared/data with a real/ai layout), `train.py` trains on all the
others together (`data.root=[...]`) and `Predictor` judges every image of the one left out, as `predict.py` would.
`--within` adds each collection's own fold 0 of 3 (benchmarks/detect.py's folds) for reference: what the recipe
reaches on a generator it was trained on. Per judged set: AUROC, accuracy at the stored threshold, balanced
accuracy, expected calibration error, the share of confidently wrong answers (wrong at p < 0.1 or > 0.9), the
share of images called unfamiliar, and the confidently wrong share among the rest; and the temperature training
calibrated with what ECE and confidently wrong answers would be without it.
A finished run is not trained again, so an interrupted benchmark resumes. Rows go to
benchmarks/results/generalise.json and a table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from detect import RECIPES, REPO, RESULTS, fold_root, folds_of, image_files, train_run

SHARED = REPO.parent / "shared"
COLLECTIONS = ["realorai_dev", "sd_coco_dev", "real_vs_ai_sample"]
AI_FOLDERS = ("ai", "1_fake")


def scores(run: Path, files: list[Path]) -> dict[str, Any]:
    """The source head's metrics on `files` (AI = under an `ai` folder), as `predict.py --evaluate` reports them:
    AUROC, accuracies, ECE, and the images it calls unfamiliar with the confidently wrong answers among all and
    among the rest; and the calibration's share: ECE and confidently wrong answers of the net's own probabilities."""
    from detective.evaluation.metrics import familiarity_metrics, source_metrics
    from detective.predict.predictor import Predictor

    predictor = Predictor.from_checkpoint(run / "checkpoints" / "best.ckpt", device="cpu")
    results = predictor.predict(files)
    probs = [r.ai_probability for r in results]
    truth = [int(f.parent.name in AI_FOLDERS) for f in files]
    metrics = source_metrics(probs, truth, predictor.threshold)
    keep = ("n", "auroc", "accuracy", "balanced_accuracy", "real_accuracy", "ai_accuracy", "ece")
    unfamiliar = [bool(r.unfamiliar) for r in results]  # None (a checkpoint that cannot tell): all familiar
    familiarity = familiarity_metrics(probs, truth, unfamiliar, predictor.threshold)
    return (
        {k: metrics[k] for k in keep}
        | familiarity
        | {"unfamiliar": familiarity["unfamiliar"] / len(files)}
        | untempered(probs, truth, predictor.threshold, predictor.temperature)
    )


def untempered(probs: list[float], truth: list[int], threshold: float, temperature: float) -> dict[str, float]:
    """The checkpoint's temperature, and the ECE and confidently wrong share the judged images would have had
    without it (every logit, the threshold's too, multiplied back by it: the same decisions)."""
    import torch

    from detective.evaluation.metrics import expected_calibration_error, familiarity_metrics

    def own(p: list[float] | float) -> torch.Tensor:
        return torch.sigmoid(torch.logit(torch.tensor(p, dtype=torch.float64), eps=1e-7) * temperature)

    raw = own(probs).tolist()
    wrong = familiarity_metrics(raw, truth, [False] * len(truth), float(own(threshold)))["confidently_wrong"]
    return {
        "temperature": temperature,
        "ece_untempered": expected_calibration_error(raw, truth),
        "wrong_untempered": wrong,
    }


def held_out(collections: list[Path], name: str, overrides: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Train on every collection but one, judge the one left out; for each collection in turn."""
    rows = {}
    for judged in collections:
        train_on = [c for c in collections if c != judged]
        roots = "[" + ",".join(str(c) for c in train_on) + "]"
        out = args.workdir / "runs" / f"{name}-without-{judged.name}"
        seconds = train_run(roots, out, overrides, args.weights, args.epochs)
        rows[judged.name] = {"trained_on": [c.name for c in train_on], "seconds": seconds}
        rows[judged.name] |= scores(out, image_files(judged))
        print(f"{name}, {judged.name} left out: {rows[judged.name]}", flush=True)
    return rows


def within(collections: list[Path], name: str, overrides: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Fold 0 of 3 inside each collection: the same recipe on a generator it was trained on."""
    rows = {}
    for data in collections:
        files = image_files(data)
        fold = folds_of(files, 3)
        root = fold_root(data, files, fold, 0, args.workdir / "folds" / data.name)
        out = args.workdir / "runs" / f"{name}-within-{data.name}"
        seconds = train_run(root, out, overrides, args.weights, args.epochs)
        test = [f for f, k in zip(files, fold, strict=True) if k == 0]
        rows[data.name] = {"seconds": seconds} | scores(out, test)
        print(f"{name}, within {data.name}: {rows[data.name]}", flush=True)
    return rows


def print_table(table: dict[str, dict[str, Any]]) -> None:
    print(
        "\n| recipe | judged on | trained on | AUROC | accuracy | balanced | ECE | confidently wrong | unfamiliar "
        "| confidently wrong, familiar | T | ECE, confidently wrong at T = 1 | train s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, row in table.items():
        for kind in ("held_out", "within"):
            for judged, r in row.get(kind, {}).items():
                trained = "its other folds" if kind == "within" else " + ".join(r["trained_on"])
                rest = r.get("confidently_wrong_familiar")
                own = f"{r['ece_untempered']:.3f}, {r['wrong_untempered']:.1%}" if "temperature" in r else "-"
                print(
                    f"| {name} | {judged} | {trained} | {r['auroc']:.3f} | {r['accuracy']:.3f} | "
                    f"{r['balanced_accuracy']:.3f} | {r['ece']:.3f} | {r['confidently_wrong']:.1%} | "
                    f"{r['unfamiliar']:.1%} | {'-' if rest is None else f'{rest:.1%}'} | "
                    f"{r.get('temperature', float('nan')):.2g} | {own} | {r['seconds']:.0f} |"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = ",".join(str(SHARED / "data" / c) for c in COLLECTIONS)
    parser.add_argument("--collections", default=default, help="comma-separated folders of real/ and ai/ images")
    parser.add_argument("--weights", type=Path, default=SHARED / "weights" / "mobilenet_v2_imagenet_coral.pth")
    parser.add_argument("--recipes", default="default", help=f"any of {', '.join(RECIPES)}")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=OVERRIDES")
    parser.add_argument("--within", action="store_true", help="also each collection's own fold 0 of 3")
    parser.add_argument("--epochs", type=int, help="trainer.max_epochs for every run (default: the config's)")
    parser.add_argument("--workdir", type=Path, default=RESULTS / "generalise")
    args = parser.parse_args()

    collections = [Path(c).resolve() for c in args.collections.split(",")]
    recipes = {name: RECIPES[name][1] for name in args.recipes.split(",") if name}
    recipes |= {v.partition("=")[0]: v.partition("=")[2].split() for v in args.variant}
    saved = RESULTS / "generalise.json"
    for name, overrides in recipes.items():
        row: dict[str, Any] = {"overrides": overrides, "held_out": held_out(collections, name, overrides, args)}
        if args.within:
            row["within"] = within(collections, name, overrides, args)
        table = {**(json.loads(saved.read_text()) if saved.is_file() else {}), name: row}
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(table, indent=2))
    print_table(json.loads(saved.read_text()))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
