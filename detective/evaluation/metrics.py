"""The metric functions: labels and probabilities in, plain values out (torchmetrics where it has the metric).
The source threshold's and temperature's calibration and the calibration error are shared with training."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    binary_average_precision,
    binary_calibration_error,
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

CALIBRATION_BINS = 10  # equal-width bins of the AI probability, for the ECE and the reliability diagram
CONFIDENT = 0.1  # an answer is confident when its AI probability is under this or over 1 - this
TEMPERATURES = torch.logspace(0, 2, 201, dtype=torch.float64)  # 1 to 100, 2.3% apart: what `fit_temperature` tries


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


def fit_temperature(logits: Tensor, target: Tensor) -> float:
    """The temperature T whose AI probabilities sigmoid(logit / T) fit the images' sources best (least log loss),
    from 1 up: only ever softening. The validation images it is fitted on come from the collections the head was
    trained on, where it is surest; a T under 1 would sharpen its answers everywhere else too, and a small split that
    happens to be separable would drive T towards 0. With one source present it stays 1."""
    target = target.double()
    if logits.numel() == 0 or target.min() == target.max():
        return 1.0
    scaled = logits.double()[None, :] / TEMPERATURES[:, None]
    losses = torch.nn.functional.binary_cross_entropy_with_logits(
        scaled, target.expand_as(scaled), reduction="none"
    ).mean(1)
    return float(TEMPERATURES[int(losses.argmin())])


def expected_calibration_error(
    probs: Sequence[float] | Tensor, target: Sequence[int] | Tensor, n_bins: int = CALIBRATION_BINS
) -> float:
    """The count-weighted gap between mean AI probability and share of AI images over `n_bins` equal-width bins:
    the one ECE of the report and of the reliability diagram's title."""
    p = torch.as_tensor(probs, dtype=torch.float32)
    t = torch.as_tensor(target, dtype=torch.long)
    return float(binary_calibration_error(p, t, n_bins=n_bins, norm="l1"))


def decide(probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """AI (1) from the threshold up, as `Predictor` decides (torchmetrics' own thresholding is `>`)."""
    return (probs >= threshold).long()


def per_source_accuracy(decisions: torch.Tensor, target: torch.Tensor) -> tuple[float | None, float | None]:
    """(share of real images called real, share of AI images called AI); None where a source is absent."""
    real, ai = target == 0, target == 1
    return (
        float(binary_accuracy(decisions[real], target[real])) if real.any() else None,
        float(binary_accuracy(decisions[ai], target[ai])) if ai.any() else None,
    )


def source_metrics(probs: Sequence[float], target: Sequence[int], threshold: float) -> dict[str, Any]:
    """The source head on one set of images. Ranking metrics (balanced accuracy, AUROC, AP, best threshold)
    need both sources and are None otherwise; the best threshold is chosen on these very images (optimistic)."""
    p, t = torch.tensor(probs, dtype=torch.float32), torch.tensor(target, dtype=torch.long)
    decisions = decide(p, threshold)
    real_acc, ai_acc = per_source_accuracy(decisions, t)
    both = real_acc is not None and ai_acc is not None
    best = best_balanced_threshold(p, t) if both else None
    return {
        "n": len(t),
        "n_ai": int(t.sum()),
        "threshold": threshold,
        "accuracy": float(binary_accuracy(decisions, t)),
        "real_accuracy": real_acc,
        "ai_accuracy": ai_acc,
        "balanced_accuracy": (real_acc + ai_acc) / 2 if both else None,
        "auroc": float(binary_auroc(p, t)) if both else None,
        "average_precision": float(binary_average_precision(p, t)) if both else None,
        "best_threshold": {"threshold": best[0], "balanced_accuracy": best[1], "optimistic": True} if best else None,
        "ece": expected_calibration_error(p, t),
    }


def band_metrics(
    probs: Sequence[float], target: Sequence[int], uncertain: Sequence[bool], threshold: float, band: float
) -> dict[str, Any]:
    """The `--uncertain` band: the share of images outside it (coverage) and the source accuracy there."""
    p, t = torch.tensor(probs, dtype=torch.float32), torch.tensor(target, dtype=torch.long)
    sure = ~torch.tensor(uncertain, dtype=torch.bool)
    return {
        "band": band,
        "uncertain": int((~sure).sum()),
        "coverage": float(sure.float().mean()),
        "accuracy_outside": float(binary_accuracy(decide(p[sure], threshold), t[sure])) if sure.any() else None,
    }


def familiarity_metrics(
    probs: Sequence[float], target: Sequence[int], unfamiliar: Sequence[bool], threshold: float
) -> dict[str, Any]:
    """Images the model calls unfamiliar: how many, the share it still vouches for (coverage), the source accuracy
    on those, and the share of confidently wrong answers among all images and among the familiar ones."""
    p, t = torch.tensor(probs, dtype=torch.float32), torch.tensor(target, dtype=torch.long)
    familiar = ~torch.tensor(unfamiliar, dtype=torch.bool)
    wrong = (decide(p, threshold) != t) & ((p < CONFIDENT) | (p > 1 - CONFIDENT))
    some = bool(familiar.any())
    return {
        "unfamiliar": int((~familiar).sum()),
        "coverage": float(familiar.float().mean()),
        "accuracy_familiar": float(binary_accuracy(decide(p[familiar], threshold), t[familiar])) if some else None,
        "confidently_wrong": float(wrong.float().mean()),
        "confidently_wrong_familiar": float(wrong[familiar].float().mean()) if some else None,
    }


def subject_metrics(target: Sequence[int], predicted: Sequence[int], classes: Sequence[str]) -> dict[str, Any]:
    """Subject head: accuracy, macro F1 (over classes present or predicted), per-class precision and recall (None
    where a class was never predicted / never present), and the confusion matrix (rows truth, columns predicted)."""
    t, p, n = torch.tensor(target, dtype=torch.long), torch.tensor(predicted, dtype=torch.long), len(classes)
    confusion = multiclass_confusion_matrix(p, t, n)
    support, called = confusion.sum(1).tolist(), confusion.sum(0).tolist()
    precision = multiclass_precision(p, t, n, average=None).tolist()
    recall = multiclass_recall(p, t, n, average=None).tolist()
    return {
        "n": len(t),
        "accuracy": float(multiclass_accuracy(p, t, n, average="micro")),
        "macro_f1": float(multiclass_f1_score(p, t, n, average="macro")),
        "classes": list(classes),
        "per_class": {
            name: {
                "precision": precision[i] if called[i] else None,
                "recall": recall[i] if support[i] else None,
                "support": support[i],
            }
            for i, name in enumerate(classes)
        },
        "confusion": confusion.tolist(),
    }
