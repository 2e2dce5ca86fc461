"""The source threshold's calibration and the calibration error: the metrics training and evaluation share."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_calibration_error

CALIBRATION_BINS = 10  # equal-width bins of the AI probability, for the ECE and the reliability diagram


def best_balanced_threshold(probs: Tensor, target: Tensor) -> tuple[float, float]:
    """The AI-probability threshold maximising balanced accuracy on (probs, target): (threshold, accuracy).

    Candidates are midpoints between consecutive distinct probabilities, so the threshold sits
    between the classes rather than on a training example. Of the candidates that tie for the best, the one nearest
    0.5, where a model trained with a calibrated loss draws its own line (the lowest of them, the first, would lean
    towards calling images AI on a small validation split). With one class present it stays 0.5.

    O(N log N): each class's probabilities are sorted once, and a binary search per candidate counts the images
    of that class below it.
    """
    target = target.long()
    if probs.numel() == 0 or target.min() == target.max():
        return 0.5, float("nan")
    probs = probs.float()
    values = torch.unique(probs)
    candidates = torch.cat([values[:1] - 1e-6, (values[1:] + values[:-1]) / 2, values[-1:] + 1e-6])
    positives, negatives = probs[target == 1].sort().values, probs[target == 0].sort().values
    called_ai = len(positives) - torch.searchsorted(positives, candidates)  # AI images at or above each candidate
    called_real = torch.searchsorted(negatives, candidates)  # real images below it
    balanced = (called_ai / len(positives) + called_real / len(negatives)) / 2
    tied = torch.nonzero(balanced == balanced.max()).squeeze(1)
    best = int(tied[torch.argmin((candidates[tied] - 0.5).abs())])
    return float(candidates[best].clamp(0, 1)), float(balanced[best])


def expected_calibration_error(
    probs: Sequence[float] | Tensor, target: Sequence[int] | Tensor, n_bins: int = CALIBRATION_BINS
) -> float:
    """The count-weighted gap between mean AI probability and share of AI images over `n_bins` equal-width bins:
    the one ECE of the report and of the reliability diagram's title."""
    p = torch.as_tensor(probs, dtype=torch.float32)
    t = torch.as_tensor(target, dtype=torch.long)
    return float(binary_calibration_error(p, t, n_bins=n_bins, norm="l1"))
