"""Pictures of a model's behaviour as PNG files: plain arrays (or image paths) in, one file out per function, and
`write_plots`, the pictures of one evaluation.

Only this module imports matplotlib, and only evaluation (`predict.py --evaluate --plots`) and the end of
training import this module: plain prediction never pays for it. Figures are drawn on `Figure` objects with
the headless Agg canvas, never through pyplot, so nothing global changes (backend, open figures) and no display
is needed. Each file is written whole or not at all (a temporary file renamed into place).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from torchmetrics.functional.classification import binary_precision_recall_curve, binary_roc

from detective.data.images import ImageDecodeError, load_rgb
from detective.evaluation.metrics import CALIBRATION_BINS, expected_calibration_error
from detective.evaluation.records import Evaluation
from detective.evaluation.text import truth_text
from detective.files import atomic_write

DPI = 100
THUMBNAIL = 160  # pixels per side of an image in the grid


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        fig.savefig(f, format="png")
    return path


def confusion_matrix_plot(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | os.PathLike, title: str = "Subject head"
) -> Path:
    """Counts with rows = truth and columns = prediction; cells shaded by the share of their row."""
    counts = np.asarray(matrix, dtype=np.int64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = max(4.0, 0.6 * len(labels) + 2.5)
    fig = _figure(side, side)
    ax = fig.add_subplot()
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels)
    for (row, col), n in np.ndenumerate(counts):
        ax.text(col, row, str(n), ha="center", va="center", color="white" if shares[row, col] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="truth", title=f"{title}: confusion matrix")
    return _save(fig, path)


def source_curves_plot(
    probs: Sequence[float], target: Sequence[int], threshold: float, path: str | os.PathLike
) -> Path:
    """ROC and precision-recall curves of the AI probability, with the decision threshold marked on both.

    Needs real and AI images both (the curves are undefined otherwise)."""
    p, t = torch.as_tensor(np.asarray(probs), dtype=torch.float32), torch.as_tensor(np.asarray(target)).long()
    if t.min() == t.max():
        raise ValueError("ROC and precision-recall curves need both real and AI images")
    fpr, tpr, _ = binary_roc(p, t)
    precision, recall, _ = binary_precision_recall_curve(p, t)
    called = p >= threshold  # the decision rule of `Predictor`
    point_tpr = float((called & (t == 1)).sum() / (t == 1).sum())
    point_fpr = float((called & (t == 0)).sum() / (t == 0).sum())
    point_precision = float((called & (t == 1)).sum() / called.sum()) if called.any() else 1.0
    fig = _figure(10, 4.6)
    roc, pr = fig.subplots(1, 2)
    roc.plot(fpr.numpy(), tpr.numpy(), label="source head")
    roc.plot([0, 1], [0, 1], ls=":", color="grey", label="chance")
    roc.plot(point_fpr, point_tpr, "o", color="C3", label=f"threshold {threshold:.3f}")
    roc.set(xlabel="false positive rate (real called AI)", ylabel="true positive rate (AI called AI)", title="ROC")
    pr.plot(recall.numpy(), precision.numpy(), label="source head")
    pr.axhline(float(t.float().mean()), ls=":", color="grey", label="chance (share of AI)")
    pr.plot(point_tpr, point_precision, "o", color="C3", label=f"threshold {threshold:.3f}")
    pr.set(xlabel="recall (AI found)", ylabel="precision (called AI that are AI)", title="Precision-recall")
    for ax in (roc, pr):
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
        ax.legend(loc="lower left" if ax is pr else "lower right")
    return _save(fig, path)


def reliability_bins(
    probs: Sequence[float], target: Sequence[int], n_bins: int = CALIBRATION_BINS
) -> list[dict[str, float]]:
    """Bins of the AI probability exactly as torchmetrics' calibration error makes them (`n_bins` equal-width
    [lo, hi) bins, and one more holding probability 1.0 alone), each with its count, mean probability and
    share of AI images; their count-weighted gap is the expected calibration error (ECE, tested)."""
    p = torch.as_tensor(np.asarray(probs), dtype=torch.float32)
    t = torch.as_tensor(np.asarray(target), dtype=torch.float32)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float32)
    index = torch.bucketize(p, edges, right=True) - 1
    bins = []
    for i in range(n_bins + 1):
        inside = index == i
        n = int(inside.sum())
        bins.append(
            {
                "lower": float(edges[i]),
                "upper": float(edges[min(i + 1, n_bins)]),
                "count": n,
                "mean_probability": float(p[inside].mean()) if n else float("nan"),
                "ai_fraction": float(t[inside].mean()) if n else float("nan"),
            }
        )
    return bins


def reliability_plot(
    probs: Sequence[float], target: Sequence[int], path: str | os.PathLike, n_bins: int = CALIBRATION_BINS
) -> Path:
    """Reliability diagram: per probability bin, the share of images that are AI against the mean AI
    probability given to them (on the diagonal when calibrated), with the image count per bin below."""
    bins = reliability_bins(probs, target, n_bins)
    shown = [b for b in bins if b["count"]]
    lefts = [b["lower"] for b in shown]
    widths = [max(b["upper"] - b["lower"], 0.01) * 0.9 for b in shown]  # probability 1.0 gets a thin bar of its own
    fig = _figure(5.5, 6)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.bar(lefts, [b["ai_fraction"] for b in shown], width=widths, align="edge", label="share that is AI")
    top.plot([b["mean_probability"] for b in shown], [b["ai_fraction"] for b in shown], "o", color="C3",
             label="at the bin's mean probability")  # fmt: skip
    top.plot([0, 1], [0, 1], ls=":", color="grey", label="perfect calibration")
    ece = expected_calibration_error(probs, target, n_bins)
    top.set(ylim=(0, 1.02), ylabel="share of images that are AI", title=f"Source head reliability (ECE {ece:.3f})")
    top.legend(loc="upper left")
    bottom.bar(lefts, [b["count"] for b in shown], width=widths, align="edge", color="grey")
    bottom.set(xlim=(0, 1.02), xlabel="AI probability", ylabel="images")
    return _save(fig, path)


def image_grid_plot(
    images: Sequence[str | os.PathLike],
    captions: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
    columns: int = 4,
) -> Path:
    """Thumbnails with a caption each (e.g. truth and prediction); an image that cannot be read shows as grey."""
    if not images:
        raise ValueError("no images to draw")
    rows = -(-len(images) // columns)
    cols = min(columns, len(images))
    fig = _figure(2.6 * cols, 2.9 * rows + (0.4 if title else 0))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, image, caption in zip(axes, images, captions, strict=False):
        ax.imshow(_thumbnail(image))
        ax.set_title(caption, fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _thumbnail(image: str | os.PathLike) -> np.ndarray:
    try:
        thumb = load_rgb(image, THUMBNAIL)
    except ImageDecodeError:
        return np.full((THUMBNAIL, THUMBNAIL, 3), 128, dtype=np.uint8)
    thumb.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.BICUBIC)
    return np.asarray(thumb)


def training_curves_plot(history: dict[str, list[tuple[int, float]]], path: str | os.PathLike) -> Path:
    """Per-epoch curves of a run (`name -> [(epoch, value)]`): losses on the left, scores in [0, 1] on the right."""
    fig = _figure(10, 4)
    losses, scores = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for name, points in sorted(history.items()):
        if not points:
            continue
        epochs, values = zip(*points, strict=True)
        (losses if "loss" in name else scores).plot(epochs, values, marker=".", label=name)
    for ax, title in ((losses, "Losses"), (scores, "Scores")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if ax.lines:
            ax.legend(fontsize="small")
    scores.set_ylim(0, 1.02)
    return _save(fig, path)


def sweep_plot(numbers: dict[str, list[tuple[float, float]]], score: str, path: str | os.PathLike) -> Path:
    """A sweep's monitored score against each swept numeric parameter (one panel per parameter)."""
    fig = _figure(4.5 * len(numbers), 3.5)
    for i, (name, points) in enumerate(sorted(numbers.items()), start=1):
        ax = fig.add_subplot(1, len(numbers), i)
        values, scores = zip(*points, strict=True)
        ax.plot(values, scores, "o")
        ax.set_xlabel(name)
        ax.set_ylabel(score)
        if min(values) > 0 and max(values) / min(values) >= 100:
            ax.set_xscale("log")
    return _save(fig, path)


def write_plots(evaluation: Evaluation, folder: str | Path) -> list[Path]:
    """The evaluation's PNGs in `folder`; a picture the folder cannot give (one source only: no ROC) is skipped
    with a note in the report."""
    folder, report, records = Path(folder), evaluation.report, evaluation.records
    written, notes = [], report["notes"]
    subject, source = report["subject"], report["source"]
    if subject is not None:
        confusion = folder / "subject_confusion.png"
        written.append(confusion_matrix_plot(subject["confusion"], subject["classes"], confusion))
    if source is not None:
        probs, target = [r.ai_probability for r in records], [int(r.is_ai) for r in records]
        if source["auroc"] is not None:
            written.append(source_curves_plot(probs, target, source["threshold"], folder / "source_roc_pr.png"))
        else:
            notes.append("no ROC or precision-recall picture: the folder holds one source only")
        written.append(reliability_plot(probs, target, folder / "source_reliability.png", CALIBRATION_BINS))
    wrong = report["most_confidently_wrong"]
    if wrong:
        grid, title = folder / "most_confidently_wrong.png", "Most confidently wrong (truth / predicted)"
        written.append(image_grid_plot([e["path"] for e in wrong], [_caption(e) for e in wrong], grid, title))
    report["plots"] = [str(p) for p in written]
    return written


def _caption(entry: Mapping[str, Any]) -> str:
    truth, predicted = entry["truth"], entry["predicted"]
    said = f"{'AI' if predicted['is_ai'] else 'real'} p={predicted['ai_probability']:.2f}"
    if "subject" in predicted:
        said = f"{predicted['subject']} {predicted['subject_confidence']:.0%}, {said}"
    return f"{Path(entry['path']).name[:28]}\ntruth: {truth_text(truth)}\npred: {said}"
