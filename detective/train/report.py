"""The end of every run: one held-out prediction, the test metrics, the best checkpoint and how to use it.

Plain lines through the `detective` logger (Hydra's console shows them as they are, and its log file keeps them).
"""

from __future__ import annotations

import logging
import random
import shlex
from typing import Any

from detective.commands import command
from detective.data.datamodule import DetectiveDataModule

log = logging.getLogger(__name__)


def show_held_out_prediction(checkpoint: str, datamodule: DetectiveDataModule, seed: int) -> None:
    """The original ended on one prediction of a random *training* image; ours is a held-out test image."""
    from detective.predict.predictor import Prediction, Predictor

    test = datamodule.splits.get("test") or []
    if not test:
        log.info("No test images held out: skipping the example prediction.")
        return
    sample = random.Random(seed).choice(test)
    (result,) = Predictor.from_checkpoint(checkpoint, device="cpu").predict([sample.path])
    truth = ", ".join(filter(None, [sample.subject, "AI generated" if sample.is_ai else "real photo"]))
    lines = [f"\nHeld-out test image: {sample.path}  (truth: {truth})"]
    if isinstance(result, Prediction):
        lines.append(f"  {result.describe().replace('  Source', chr(10) + '  Source')}")
    else:
        lines.append(f"  could not predict: {result.error}")
    log.info("\n".join(lines))


def report(metrics: dict[str, Any], best: str | None, datamodule: DetectiveDataModule, seed: int) -> None:
    """Print the end-of-run summary for `best` (the checkpoint the test metrics come from)."""
    if best:
        show_held_out_prediction(best, datamodule, seed)
    if metrics:
        rows = [f"  {name:<32} {metrics[name]:.4f}" for name in sorted(metrics)]
        log.info("\n".join(["\nTest metrics (best checkpoint, held-out test split):", *rows]))
    if best:
        test = datamodule.splits.get("test")
        example = shlex.quote(str(test[0].path)) if test else "IMAGE"
        log.info(
            f"\nBest checkpoint: {best}\n"
            f"Predict with:    {command('predict')} {example} --checkpoint {shlex.quote(best)}"
        )
