"""The shortcut check: how well does file metadata alone tell AI from real images?

A detector learns whatever separates the two sources most easily. When the format, pixel size, JPEG
quality, EXIF or compressed size already do, it may learn those instead of generation traces, and then
fail on any image saved differently. A small logistic regression on those facts, cross-validated on
the train split, measures how much they give away; each feature alone shows which ones do.

Reading is one header parse per file (no decode); the model is plain numpy, so the audit stays light.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from detective.data.images import ImageDecodeError, jpeg_quality, opened_header
from detective.data.scan import Sample

FOLDS = 5
# With fewer train images of a source, metadata carrying no signal still reaches AUROC 0.8 by chance in a few
# percent of data sets (8% at 10 per source, under 1% at 20, simulated).
MIN_PER_SOURCE = 20
L2 = 1e-2  # ridge on the mean log-loss: keeps the weights finite when one feature separates the sources
NEWTON_STEPS = 50
FEATURES = ("format", "width", "height", "aspect ratio", "JPEG quality", "EXIF", "bytes per pixel")


@dataclass(frozen=True)
class FileFacts:
    """What one file's header and size on disk say, apart from its content."""

    format: str
    size: tuple[int, int]
    jpeg_quality: int | None
    exif: bool
    n_bytes: int


@dataclass(frozen=True)
class ShortcutCheck:
    """Cross-validated AUROCs of the metadata classifier (`auroc`) and of each feature alone; `skipped` says why
    there are none."""

    auroc: float | None = None
    feature_aurocs: dict[str, float] = field(default_factory=dict)
    images: int = 0
    folds: int = FOLDS
    skipped: str = ""

    def giveaways(self, threshold: float) -> list[str]:
        """Features whose AUROC alone reaches `threshold`, strongest first."""
        ranked = sorted(self.feature_aurocs.items(), key=lambda item: -item[1])
        return [name for name, auc in ranked if auc >= threshold]


def read_facts(sample: Sample) -> FileFacts:
    """The facts the scan did not keep (JPEG tables, EXIF, bytes on disk), from one more header parse."""
    with opened_header(sample.path) as im:
        # `im.getexif()` is not used: for a TIFF it returns the file's own tags, EXIF or not.
        exif = bool(im.info.get("exif"))
        return FileFacts(sample.format, sample.size, jpeg_quality(im), exif, os.path.getsize(sample.path))


def feature_matrix(facts: Sequence[FileFacts]) -> tuple[np.ndarray, list[str]]:
    """One row per file and the feature (a name in `FEATURES`) behind each column; the format is one-hot over
    the formats present, a non-JPEG has quality 0 (its format column tells it apart)."""
    formats = sorted({f.format for f in facts})
    width = np.array([f.size[0] for f in facts], dtype=np.float64)
    height = np.array([f.size[1] for f in facts], dtype=np.float64)
    columns = [np.array([f.format == fmt for f in facts], dtype=np.float64) for fmt in formats]
    columns += [
        np.log(width),
        np.log(height),
        width / height,
        np.array([f.jpeg_quality or 0 for f in facts], dtype=np.float64),
        np.array([f.exif for f in facts], dtype=np.float64),
        np.log(np.array([f.n_bytes for f in facts], dtype=np.float64) / (width * height)),
    ]
    return np.stack(columns, axis=1), ["format"] * len(formats) + list(FEATURES[1:])


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by ranks (Mann-Whitney U), ties counting one half."""
    labels = np.asarray(labels, dtype=bool)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    mean_rank = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based, averaged over ties
    n_pos, n_neg = labels.sum(), (~labels).sum()
    return float((mean_rank[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2) -> np.ndarray:
    """Weights (the last one the intercept, not penalised) minimising mean log-loss + l2/2 |w|^2, by Newton's
    method: the problem is tiny and strictly convex, so a few exact steps beat hundreds of gradient ones."""
    a = np.hstack([x, np.ones((len(x), 1))])
    penalty = l2 * np.eye(a.shape[1])
    penalty[-1, -1] = 0.0
    w = np.zeros(a.shape[1])
    for _ in range(NEWTON_STEPS):
        p = 0.5 * (1.0 + np.tanh(0.5 * (a @ w)))  # the logistic function, without overflow
        grad = a.T @ (p - y) / len(a) + penalty @ w
        # The tiny ridge keeps the intercept's row invertible should every probability saturate at 0 or 1.
        hess = (a.T * (p * (1 - p))) @ a / len(a) + penalty + 1e-9 * np.eye(a.shape[1])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def fold_ids(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each sample's fold, stratified by source: each source shuffled by `seed`, then dealt round-robin."""
    rng = np.random.default_rng(seed)
    ids = np.empty(len(y), dtype=np.int64)
    for source in (False, True):
        members = np.flatnonzero(y == source)
        ids[rng.permutation(members)] = np.arange(len(members)) % folds
    return ids


def cv_auroc(x: np.ndarray, y: np.ndarray, folds: int = FOLDS, seed: int = 0) -> float:
    """Mean held-out AUROC of `fit_logistic` over stratified folds; features standardised on each training part
    (a constant one becomes 0)."""
    y = np.asarray(y, dtype=bool)
    ids = fold_ids(y, folds, seed)
    aurocs = []
    for k in range(folds):
        held = ids == k
        mean, std = x[~held].mean(axis=0), x[~held].std(axis=0)
        std[std == 0] = 1.0
        w = fit_logistic((x[~held] - mean) / std, y[~held].astype(np.float64))
        scores = (x[held] - mean) / std @ w[:-1]
        aurocs.append(auroc(scores, y[held]))
    return float(np.mean(aurocs))


def shortcut_aurocs(
    x: np.ndarray, y: np.ndarray, columns: Sequence[str], folds: int = FOLDS, seed: int = 0
) -> tuple[float, dict[str, float]]:
    """The CV AUROC on all columns, and on each feature's columns alone."""
    alone = {name: cv_auroc(x[:, [c == name for c in columns]], y, folds, seed) for name in dict.fromkeys(columns)}
    return cv_auroc(x, y, folds, seed), alone


def shortcut_check(samples: Sequence[Sample], folds: int = FOLDS, seed: int = 0) -> ShortcutCheck:
    """Read the samples' headers and cross-validate the metadata classifier; skipped with a reason when either
    source has fewer than `MIN_PER_SOURCE` images."""
    n_ai = sum(s.is_ai for s in samples)
    if min(n_ai, len(samples) - n_ai) < MIN_PER_SOURCE:
        return ShortcutCheck(
            skipped=f"the train split has {len(samples) - n_ai} real and {n_ai} AI images, "
            f"under {MIN_PER_SOURCE} of a source"
        )
    facts, labels = [], []
    for s in samples:
        try:
            facts.append(read_facts(s))
        except ImageDecodeError:  # changed since the scan; the dataset reports it when it decodes the file
            continue
        labels.append(s.is_ai)
    x, columns = feature_matrix(facts)
    overall, alone = shortcut_aurocs(x, np.array(labels), columns, folds, seed)
    return ShortcutCheck(overall, alone, len(facts), folds)
