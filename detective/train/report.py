"""The end of every run: one held-out prediction, the test metrics, the best checkpoint and how to use it.

Plain lines through the `detective` logger (Hydra's console shows them as they are, and its log file keeps them).
"""

from __future__ import annotations

import csv
import logging
import random
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detective.commands import command
from detective.data.datamodule import DetectiveDataModule
from detective.data.scan import Sample

log = logging.getLogger(__name__)


def held_out_example(datamodule: DetectiveDataModule, seed: int) -> Sample | None:
    """A random test image, the same for a seed: the summary predicts it, then suggests `predict.py` on it."""
    test = datamodule.splits.get("test") or []
    return random.Random(seed).choice(test) if test else None


def show_held_out_prediction(checkpoint: str, sample: Sample | None) -> None:
    """The original ended on one prediction of a random *training* image; ours is a held-out test image."""
    from detective.predict.predictor import Prediction, Predictor

    if sample is None:
        log.info("No test images held out: skipping the example prediction.")
        return
    (result,) = Predictor.from_checkpoint(checkpoint, device="cpu").predict([sample.path])
    truth = ", ".join(filter(None, [sample.subject, "AI generated" if sample.is_ai else "real photo"]))
    lines = [f"\nHeld-out test image: {sample.path}  (truth: {truth})"]
    if isinstance(result, Prediction):
        lines.append(f"  {result.describe().replace('  Source', chr(10) + '  Source')}")
    else:
        lines.append(f"  could not predict: {result.error}")
    log.info("\n".join(lines))


# Per-epoch metrics drawn as training curves (those a run logs; source-only runs have no subject ones).
CURVES = (
    "train/loss_epoch",
    "val/loss",
    "val/score",
    "val/source_auroc",
    "val/source_acc",
    "val/subject_acc",
)


def read_history(metrics_csv: Path, names: tuple[str, ...] = CURVES) -> dict[str, list[tuple[int, float]]]:
    """`name -> [(epoch, value)]` from the CSV logger's file (rows hold one logged value per column or none)."""
    history: dict[str, list[tuple[int, float]]] = {name: [] for name in names}
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            for name in names:
                if row.get(name) and row.get("epoch"):
                    history[name].append((int(row["epoch"]), float(row[name])))
    return {name: points for name, points in history.items() if points}


def write_pictures(best: str, datamodule: DetectiveDataModule, output_dir: Path) -> list[Path]:
    """PNGs of the best checkpoint on the test split (confusion matrix, ROC and precision-recall with the threshold,
    reliability, the most confidently wrong images) and the run's training curves, in `output_dir/plots`."""
    from detective.evaluation import plots  # matplotlib: only now, at the end of the run
    from detective.predict.evaluate import evaluate_samples
    from detective.predict.predictor import Predictor

    folder = output_dir / "plots"
    written = []
    test = datamodule.splits.get("test") or []
    if test:
        predictor = Predictor.from_checkpoint(best, device="cpu")
        evaluation, _ = evaluate_samples(test, predictor, subject_head=bool(predictor.subjects))
        if evaluation.records:
            written += plots.write_plots(evaluation, folder)
    metrics_csv = output_dir / "logs" / "metrics.csv"
    if metrics_csv.is_file():
        written.append(plots.training_curves_plot(read_history(metrics_csv), folder / "training_curves.png"))
    return written


def log_pictures(pictures: Sequence[Path], loggers: Iterable[Any]) -> list[Any]:
    """The pictures also into every logger that takes images (TensorBoard's `SummaryWriter.add_image`: its Images
    tab), under `plots/<name>`; returns those loggers."""
    from PIL import Image

    takers = [logger for logger in loggers if hasattr(logger.experiment, "add_image")]
    for logger in takers:
        for picture in pictures:
            with Image.open(picture) as image:
                pixels = np.asarray(image.convert("RGB"))
            logger.experiment.add_image(f"plots/{picture.stem}", pixels, dataformats="HWC")
        logger.experiment.flush()
    return takers


def report(
    metrics: dict[str, Any],
    best: str | None,
    datamodule: DetectiveDataModule,
    seed: int,
    output_dir: Path,
    loggers: Iterable[Any] = (),
) -> None:
    """Print the end-of-run summary for `best` (the checkpoint the test metrics come from), with its pictures, which
    also go to the `loggers` that take images."""
    example = held_out_example(datamodule, seed)
    if best:
        show_held_out_prediction(best, example)
    if metrics:
        rows = [f"  {name:<32} {metrics[name]:.4f}" for name in sorted(metrics)]
        log.info("\n".join(["\nTest metrics (best checkpoint, held-out test split):", *rows]))
    if best:
        pictures = write_pictures(best, datamodule, output_dir)
        if pictures:
            log.info("\n".join(["\nPictures:", *(f"  {p}" for p in pictures)]))
            for logger in log_pictures(pictures, loggers):
                log.info(f"  (also in {type(logger).__name__}'s images, under plots/)")
        image = shlex.quote(str(example.path)) if example else "IMAGE"
        log.info(
            f"\nBest checkpoint: {best}\nPredict with:    {command('predict')} {image} --checkpoint {shlex.quote(best)}"
        )
