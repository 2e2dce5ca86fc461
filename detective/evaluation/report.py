"""One evaluation's figures from its per-image records, with no I/O: both heads overall, slices by subject, file
format, pixel size and JPEG quality (a detector that only works on PNGs or on one size shows there), and the most
confidently wrong images."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchmetrics.functional.classification import binary_accuracy, binary_auroc

from detective.evaluation.metrics import (
    band_metrics,
    decide,
    familiarity_metrics,
    per_source_accuracy,
    source_metrics,
    subject_metrics,
)
from detective.evaluation.records import Evaluation, Record
from detective.evaluation.text import n_images

WORST_SHOWN = 16  # most confidently wrong images listed and drawn
SIZE_BUCKETS = ((256, "<256px"), (512, "256-511px"), (1024, "512-1023px"))  # by the shorter side
JPEG_BUCKETS = ((70, "q<70"), (90, "q70-89"))
SLICES = ("subject", "format", "size", "jpeg_quality")


def size_bucket(size: tuple[int, int]) -> str:
    side = min(size)
    return next((name for limit, name in SIZE_BUCKETS if side < limit), f">={SIZE_BUCKETS[-1][0]}px")


def quality_bucket(quality: int | None) -> str:
    if quality is None:
        return "non-JPEG"
    return next((name for limit, name in JPEG_BUCKETS if quality < limit), f"q>={JPEG_BUCKETS[-1][0]}")


SLICE_KEYS: dict[str, Callable[[Record], str]] = {
    "subject": lambda r: r.subject,
    "format": lambda r: r.format or "?",
    "size": lambda r: size_bucket(r.size),
    "jpeg_quality": lambda r: quality_bucket(r.jpeg_quality),
}
SLICE_ORDER: dict[str, Sequence[str]] = {
    "size": [name for _, name in SIZE_BUCKETS] + [f">={SIZE_BUCKETS[-1][0]}px"],
    "jpeg_quality": [name for _, name in JPEG_BUCKETS] + [f"q>={JPEG_BUCKETS[-1][0]}", "non-JPEG"],
}


def slice_metrics(records: Sequence[Record], threshold: float, subjects: Sequence[str] | None) -> dict[str, Any]:
    """Both heads on one slice; `subjects` None when the subject head is not evaluated."""
    p = torch.tensor([r.ai_probability for r in records], dtype=torch.float32)
    t = torch.tensor([int(r.is_ai) for r in records], dtype=torch.long)
    decisions = decide(p, threshold)
    real_acc, ai_acc = per_source_accuracy(decisions, t)
    known = [r for r in records if subjects is not None and r.subject in subjects]
    return {
        "n": len(records),
        "n_ai": int(t.sum()),
        "subject_accuracy": sum(r.predicted_subject == r.subject for r in known) / len(known) if known else None,
        "source_accuracy": float(binary_accuracy(decisions, t)),
        "real_accuracy": real_acc,
        "ai_accuracy": ai_acc,
        "auroc": float(binary_auroc(p, t)) if real_acc is not None and ai_acc is not None else None,
    }


def slices(records: Sequence[Record], threshold: float, subjects: Sequence[str] | None) -> dict[str, Any]:
    """`slice_metrics` per subject, file format, pixel-size bucket and JPEG-quality bucket."""
    out: dict[str, Any] = {}
    for name in SLICES:
        if name == "subject" and not any(r.subject for r in records):
            continue  # source-only data: there are no subjects to slice by
        groups: dict[str, list[Record]] = defaultdict(list)
        for r in records:
            groups[SLICE_KEYS[name](r)].append(r)
        order = SLICE_ORDER.get(name, sorted(groups))
        out[name] = {key: slice_metrics(groups[key], threshold, subjects) for key in order if key in groups}
    return out


def wrongness(record: Record, threshold: float, subject_scored: bool) -> float:
    """How confidently the image is wrong: the probability given to the wrong answer (0 when both are right)."""
    source = record.ai_probability if record.ai_probability >= threshold else 1 - record.ai_probability
    wrong_source = (record.ai_probability >= threshold) != record.is_ai
    wrong_subject = subject_scored and record.predicted_subject != record.subject
    return max(source if wrong_source else 0.0, record.subject_confidence if wrong_subject else 0.0)


def subject_section(
    records: Sequence[Record], subjects: Sequence[str], subject_head: bool
) -> tuple[dict[str, Any] | None, list[str]]:
    """Subject metrics on the images whose folder is one of the checkpoint's subjects, and notes on the rest."""
    if not subject_head:
        return None, ["subject head off: the checkpoint predicts the source only"]
    if not any(r.subject for r in records):  # real/ai folders at the top: nothing to score the subject head on
        return None, ["no subject folders here (source only): no subject metrics"]
    unknown = sorted({r.subject for r in records if r.subject} - set(subjects))
    known = [r for r in records if r.subject in subjects]
    notes = []
    if unknown:
        n_unknown = sum(r.subject in unknown for r in records)
        notes.append(
            f"subjects not known to the checkpoint: {', '.join(unknown)} ({n_images(n_unknown)}): no subject metrics "
            "for them"
        )
    if not known:
        return None, [*notes, f"no subject metrics: the checkpoint knows {', '.join(subjects)}"]
    index = {name: i for i, name in enumerate(subjects)}
    target = [index[r.subject] for r in known]
    predicted = [index[r.predicted_subject] for r in known]
    return subject_metrics(target, predicted, subjects), notes


def build_report(
    records: Sequence[Record], subjects: Sequence[str], threshold: float, band: float, subject_head: bool = True
) -> Evaluation:
    """Every figure of the evaluation from the per-image records (no I/O); with no records, no figures."""
    if not records:
        empty = {"images": 0, "notes": [], "subject": None, "source": None, "slices": {}, "most_confidently_wrong": []}
        return Evaluation(empty)
    subject, notes = subject_section(records, subjects, subject_head)
    scored = list(subjects) if subject is not None else None
    probs = [r.ai_probability for r in records]
    target = [int(r.is_ai) for r in records]
    source = source_metrics(probs, target, threshold)
    if band > 0:
        source["uncertain"] = band_metrics(probs, target, [r.uncertain for r in records], threshold, band)
    if all(r.unfamiliar is not None for r in records):  # the checkpoint tells (one with a novelty limit)
        source["familiarity"] = familiarity_metrics(probs, target, [r.unfamiliar for r in records], threshold)
    wrong = [(wrongness(r, threshold, scored is not None and r.subject in scored), r) for r in records]
    worst = sorted((pair for pair in wrong if pair[0] > 0), key=lambda pair: -pair[0])[:WORST_SHOWN]
    report = {
        "images": len(records),
        "notes": notes,
        "subject": subject,
        "source": source,
        "slices": slices(records, threshold, scored),
        "most_confidently_wrong": [_wrong_entry(r, threshold, scored) for _, r in worst],
    }
    return Evaluation(report, list(records))


def _wrong_entry(record: Record, threshold: float, subjects: Sequence[str] | None) -> dict[str, Any]:
    entry = {
        "path": str(record.path),
        "truth": {"subject": record.subject, "is_ai": record.is_ai},
        "predicted": {"is_ai": record.ai_probability >= threshold, "ai_probability": record.ai_probability},
    }
    if subjects is not None:
        entry["predicted"].update(subject=record.predicted_subject, subject_confidence=record.subject_confidence)
    return entry
