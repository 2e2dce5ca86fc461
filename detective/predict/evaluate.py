"""`predict.py DIR --evaluate`: score a checkpoint on any labelled folder, and show where it fails.

Labels come from `scan_folder` with the label rule the checkpoint was trained with, so a folder is read exactly
as training reads it; images that cannot be read or labelled are listed and left out of every figure. The metric
functions are pure (labels and predictions in, plain dicts out) and use torchmetrics where it has the metric; the
driver `evaluate_folder` feeds the folder through the `Predictor`, the same one `predict.py` uses, so every
figure agrees with what `predict.py` says image by image. Slices by subject, file format, pixel size and JPEG
quality show a detector that only works on PNGs or on one size; the optional robustness sweep re-scores the
source head after perturbations applied in memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    binary_average_precision,
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from detective.data.images import ImageDecodeError, jpeg_quality, load_rgb, opened_header
from detective.data.labels import LabelRule
from detective.data.scan import Sample, scan_folder
from detective.evaluation.metrics import CALIBRATION_BINS, best_balanced_threshold, expected_calibration_error
from detective.predict.perturb import Perturbation
from detective.predict.predictor import Failure, Prediction, Predictor, default_workers

WORST_SHOWN = 16  # most confidently wrong images listed and drawn
SIZE_BUCKETS = ((256, "<256px"), (512, "256-511px"), (1024, "512-1023px"))  # by the shorter side
JPEG_BUCKETS = ((70, "q<70"), (90, "q70-89"))
SLICES = ("subject", "format", "size", "jpeg_quality")
Progress = Callable[[int, int], None]  # (images done, images in all): for a progress bar


@dataclass(frozen=True)
class Record:
    """One evaluated image: the truth from its path, the predictor's answers, and the facts slices group by."""

    path: Path
    subject: str
    is_ai: bool
    ai_probability: float
    predicted_subject: str = ""
    subject_confidence: float = 0.0
    uncertain: bool = False
    format: str = ""
    size: tuple[int, int] = (0, 0)
    jpeg_quality: int | None = None


# --- image facts ---------------------------------------------------------------------------------------------


def file_jpeg_quality(path: str | Path) -> int | None:
    """Estimated quality of a JPEG file from its header (None for other formats or an odd table)."""
    try:
        with opened_header(path) as im:
            return jpeg_quality(im)
    except ImageDecodeError:  # the file was readable when scanned; a header that fails now only loses this slice
        return None


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


# --- metrics: pure functions ---------------------------------------------------------------------------------


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


# --- the report ----------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """A finished evaluation: the report (plain values, what `--json` prints) and the records behind it."""

    report: dict[str, Any]
    records: list[Record] = field(default_factory=list)


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
            f"subjects not known to the checkpoint: {', '.join(unknown)} ({_count(n_unknown)}): no subject metrics "
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


# --- the folder driver ---------------------------------------------------------------------------------------


def label_rule(hparams: Mapping[str, Any], token: str | None = None) -> LabelRule:
    """The rule the checkpoint was trained with (`hparams["labels"]`, the `data.labels` config), else the defaults;
    `token` overrides the AI token."""
    saved = hparams.get("labels") or {}
    known = {
        k: tuple(v) if isinstance(v, (list, tuple)) else v
        for k, v in saved.items()
        if k in LabelRule.__dataclass_fields__
    }
    rule = LabelRule(**known)
    return replace(rule, token=token) if token else rule


def evaluate_folder(
    root: str | Path,
    predictor: Predictor,
    rule: LabelRule = LabelRule(),
    subject_head: bool = True,
    perturbations: Sequence[Perturbation] = (),
    batch_size: int = 32,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """Scan, predict, score; then the same source metrics after each perturbation. Raises FileNotFoundError /
    NotADirectoryError for a bad root; unreadable images never raise, they are listed in `report["excluded"]`."""
    scan = scan_folder(root, rule)
    tick = _Ticker(progress or (lambda done, total: None), len(scan.samples) * (1 + len(perturbations)))
    excluded = [{"path": str(p), "error": f"{p}: outside any subject folder, not labelled"} for p in scan.unlabelled]
    excluded += [{"path": err.path, "error": str(err)} for err in scan.unreadable]
    evaluation, failed = evaluate_samples(scan.samples, predictor, subject_head, batch_size, workers, tick)
    excluded += failed
    records = evaluation.records
    tick.total = len(scan.samples) + len(records) * len(perturbations)
    report = evaluation.report
    if scan.split_layout:
        report["notes"].append(
            f"{scan.root} has train/val/test folders and all of them were scored: figures on training images are "
            f"optimistic; evaluate {scan.root}/test for the held-out split"
        )
    report["robustness"] = [robustness(records, predictor, p, batch_size, workers, tick) for p in perturbations]
    evaluation.report = {
        "root": str(scan.root),
        "label_rule": {k: getattr(rule, k) for k in LabelRule.__dataclass_fields__},
        **report,
        "excluded": excluded,
        "ignored_files": scan.ignored_files,
    }
    return evaluation


def evaluate_samples(
    samples: Sequence[Sample],
    predictor: Predictor,
    subject_head: bool = True,
    batch_size: int = 32,
    workers: int | None = None,
    tick: Callable[[], None] = lambda: None,
) -> tuple[Evaluation, list[dict[str, str]]]:
    """Predict labelled samples and score them: (the evaluation, the samples that could not be read). The end of a
    training run uses it on its test split, `evaluate_folder` on a scanned folder."""
    records, failed = [], []
    for sample, result in zip(
        samples, predictor.iter_predict([s.path for s in samples], batch_size, 1, workers), strict=True
    ):
        tick()
        if isinstance(result, Failure):
            failed.append({"path": str(sample.path), "error": result.error})
            continue
        records.append(_record(sample, result))
    evaluation = build_report(records, predictor.subjects, predictor.threshold, predictor.uncertain, subject_head)
    return evaluation, failed


@dataclass
class _Ticker:
    progress: Progress
    total: int
    done: int = 0

    def __call__(self) -> None:
        self.done += 1
        self.progress(self.done, self.total)


def _record(sample: Sample, result: Prediction) -> Record:
    quality = file_jpeg_quality(sample.path) if sample.format == "JPEG" else None
    return Record(
        sample.path,
        sample.subject,
        sample.is_ai,
        result.ai_probability,
        result.subject,
        result.subject_confidence,
        result.uncertain,
        sample.format,
        sample.size,
        quality,
    )


def robustness(
    records: Sequence[Record],
    predictor: Predictor,
    perturbation: Perturbation,
    batch_size: int = 32,
    workers: int | None = None,
    tick: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Source metrics after `perturbation`, applied to each decoded image in memory (the files are only read)."""
    probs, target, failed = [], [], []
    for record, result in zip(
        records, _perturbed_predictions(records, predictor, perturbation, batch_size, workers), strict=True
    ):
        tick()
        if isinstance(result, str):
            failed.append({"path": str(record.path), "error": result})
        else:
            probs.append(result)
            target.append(int(record.is_ai))
    metrics = source_metrics(probs, target, predictor.threshold) if probs else None
    return {"perturbation": str(perturbation), "source": metrics, "excluded": failed}


def _perturbed_predictions(
    records: Sequence[Record], predictor: Predictor, perturbation: Perturbation, batch_size: int, workers: int | None
) -> Iterator[float | str]:
    """Per record, in order: the AI probability of the perturbed image, or the reason it failed.

    Perturbing (a full decode, and e.g. a JPEG encode) is the costly part, so it runs in the thread pool,
    a batch at a time; the perturbed images are then predicted without further threads."""
    with ThreadPoolExecutor(max(1, default_workers() if workers is None else workers)) as pool:
        for chunk in _batched(records, batch_size):
            images = list(pool.map(lambda r: _perturbed(r.path, perturbation), chunk))
            good = [im for im in images if isinstance(im, Image.Image)]
            scores = iter(predictor.predict(good, batch_size, 1, workers=0))
            for image in images:
                if isinstance(image, str):
                    yield image
                    continue
                result = next(scores)
                yield result.error if isinstance(result, Failure) else result.ai_probability


def _perturbed(path: Path, perturbation: Perturbation) -> Image.Image | str:
    try:
        return perturbation.apply(load_rgb(path))
    except ImageDecodeError as err:
        return str(err)


def _batched(items: Sequence[Record], size: int) -> Iterable[Sequence[Record]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


# --- the printed report --------------------------------------------------------------------------------------


def format_report(report: Mapping[str, Any], listed: int = 10) -> str:
    """The report for the console: compact tables; `listed` excluded images and wrong images shown at most."""
    checkpoint = report.get("checkpoint", "the checkpoint")
    lines = [f"Evaluation of {checkpoint} on {report['root']}: {_count(report['images'])}"]
    lines += [f"  note: {note}" for note in report["notes"]]
    if report["subject"] is not None:
        lines += _subject_lines(report["subject"])
    if report["source"] is not None:
        lines += _source_lines(report["source"])
        lines += _slice_lines(report["slices"])
        if report.get("robustness"):
            lines += _robustness_lines(report["source"], report["robustness"])
    wrong = report["most_confidently_wrong"]
    if wrong:
        lines.append(f"Most confidently wrong ({min(len(wrong), listed)} of the worst {len(wrong)} shown):")
        lines += [f"  {_wrong_line(entry)}" for entry in wrong[:listed]]
    excluded = report["excluded"]
    if excluded:
        lines.append(f"Excluded from every figure: {_count(len(excluded))}")
        lines += [f"  {e['error']}" for e in excluded[:listed]]
        if len(excluded) > listed:
            lines.append(f"  ... and {len(excluded) - listed} more (all of them in --json)")
    if report.get("plots"):
        lines.append("Pictures: " + "  ".join(report["plots"]))
    return "\n".join(lines)


def _count(n: int) -> str:
    return f"{n} image" if n == 1 else f"{n} images"


def _num(value: float | None, width: int = 7, digits: int = 3) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def _subject_lines(subject: Mapping[str, Any]) -> list[str]:
    classes = subject["classes"]
    width = max(12, *(len(c) + 2 for c in classes))
    lines = [
        f"Subject head ({_count(subject['n'])}): accuracy {subject['accuracy']:.3f}  "
        f"macro F1 {subject['macro_f1']:.3f}",
        f"  {'subject':<{width}}precision  recall  support",
    ]
    for name, row in subject["per_class"].items():
        lines.append(f"  {name:<{width}}{_num(row['precision'], 9)}{_num(row['recall'], 8)}{row['support']:>9}")
    lines.append("  confusion (rows: truth, columns: predicted)")
    lines.append(f"  {'':<{width}}" + "".join(f"{c[:7]:>8}" for c in classes))
    for name, row in zip(classes, subject["confusion"], strict=True):
        lines.append(f"  {name:<{width}}" + "".join(f"{n:>8}" for n in row))
    return lines


def _source_lines(source: Mapping[str, Any]) -> list[str]:
    lines = [
        f"Source head ({_count(source['n'])}, {source['n_ai']} AI) at threshold {source['threshold']:.3f}: "
        f"accuracy {source['accuracy']:.3f}  balanced {_num(source['balanced_accuracy'], 0)} "
        f"(real {_num(source['real_accuracy'], 0)}, AI {_num(source['ai_accuracy'], 0)})",
        f"  AUROC {_num(source['auroc'], 0)}  AP {_num(source['average_precision'], 0)}  "
        f"expected calibration error {source['ece']:.3f}",
    ]
    best = source["best_threshold"]
    if best:
        lines.append(
            f"  best threshold on this folder: {best['threshold']:.3f} -> balanced accuracy "
            f"{best['balanced_accuracy']:.3f} (optimistic: chosen on the images it scores)"
        )
    band = source.get("uncertain")
    if band:
        lines.append(
            f"  uncertain band +-{band['band']:g}: {_count(band['uncertain'])} uncertain, coverage "
            f"{band['coverage']:.3f}, accuracy outside the band {_num(band['accuracy_outside'], 0)}"
        )
    return lines


def _slice_lines(table: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    lines = [f"{'Slices':<26}{'n':>6}{'AI':>6}{'subject':>9}{'source':>8}{'real':>8}{'AI':>8}{'AUROC':>8}"]
    for kind, groups in table.items():
        for key, row in groups.items():
            lines.append(
                f"  {f'{kind}={key}'[:23]:<24}{row['n']:>6}{row['n_ai']:>6}{_num(row['subject_accuracy'], 9)}"
                f"{_num(row['source_accuracy'], 8)}{_num(row['real_accuracy'], 8)}{_num(row['ai_accuracy'], 8)}"
                f"{_num(row['auroc'], 8)}"
            )
    return lines


def _robustness_lines(clean: Mapping[str, Any], sweep: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [f"{'Robustness (source head)':<26}{'n':>6}{'accuracy':>10}{'balanced':>10}{'AUROC':>8}{'AP':>8}{'ECE':>8}"]
    for name, m in [("clean", clean), *((r["perturbation"], r["source"]) for r in sweep)]:
        if m is None:
            lines.append(f"  {name:<24}  no image could be perturbed")
            continue
        lines.append(
            f"  {name:<24}{m['n']:>6}{_num(m['accuracy'], 10)}{_num(m['balanced_accuracy'], 10)}"
            f"{_num(m['auroc'], 8)}{_num(m['average_precision'], 8)}{_num(m['ece'], 8)}"
        )
    return lines


def _wrong_line(entry: Mapping[str, Any]) -> str:
    truth, predicted = entry["truth"], entry["predicted"]
    said = "AI" if predicted["is_ai"] else "real"
    guess = f"{said} (AI probability {predicted['ai_probability']:.2f})"
    if "subject" in predicted:
        guess = f"{predicted['subject']} ({predicted['subject_confidence']:.0%}), {guess}"
    return f"{entry['path']}  truth: {_truth(truth)}  predicted: {guess}"


def _truth(truth: Mapping[str, Any]) -> str:
    """ "cat, AI", or just "AI" for an image of a source-only folder."""
    source = "AI" if truth["is_ai"] else "real"
    return f"{truth['subject']}, {source}" if truth["subject"] else source


# --- the pictures --------------------------------------------------------------------------------------------


def write_plots(evaluation: Evaluation, folder: str | Path) -> list[Path]:
    """The evaluation's PNGs in `folder`; a picture the folder cannot give (one source only: no ROC) is skipped
    with a note in the report."""
    from detective import plots  # matplotlib: only when pictures are asked for

    folder, report, records = Path(folder), evaluation.report, evaluation.records
    written, notes = [], report["notes"]
    subject, source = report["subject"], report["source"]
    if subject is not None:
        confusion = folder / "subject_confusion.png"
        written.append(plots.confusion_matrix_plot(subject["confusion"], subject["classes"], confusion))
    if source is not None:
        probs, target = [r.ai_probability for r in records], [int(r.is_ai) for r in records]
        if source["auroc"] is not None:
            written.append(plots.source_curves_plot(probs, target, source["threshold"], folder / "source_roc_pr.png"))
        else:
            notes.append("no ROC or precision-recall picture: the folder holds one source only")
        written.append(plots.reliability_plot(probs, target, folder / "source_reliability.png", CALIBRATION_BINS))
    wrong = report["most_confidently_wrong"]
    if wrong:
        grid, title = folder / "most_confidently_wrong.png", "Most confidently wrong (truth / predicted)"
        written.append(plots.image_grid_plot([e["path"] for e in wrong], [_caption(e) for e in wrong], grid, title))
    report["plots"] = [str(p) for p in written]
    return written


def _caption(entry: Mapping[str, Any]) -> str:
    truth, predicted = entry["truth"], entry["predicted"]
    said = f"{'AI' if predicted['is_ai'] else 'real'} p={predicted['ai_probability']:.2f}"
    if "subject" in predicted:
        said = f"{predicted['subject']} {predicted['subject_confidence']:.0%}, {said}"
    return f"{Path(entry['path']).name[:28]}\ntruth: {_truth(truth)}\npred: {said}"
