"""The evaluation report for the console: compact tables from the report's plain values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def format_evaluation(report: Mapping[str, Any], listed: int = 10) -> str:
    """The report for the console: compact tables; `listed` excluded images and wrong images shown at most."""
    checkpoint = report.get("checkpoint", "the checkpoint")
    lines = [f"Evaluation of {checkpoint} on {report['root']}: {n_images(report['images'])}"]
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
        lines.append(f"Excluded from every figure: {n_images(len(excluded))}")
        lines += [f"  {e['error']}" for e in excluded[:listed]]
        if len(excluded) > listed:
            lines.append(f"  ... and {len(excluded) - listed} more (all of them in --json)")
    if report.get("plots"):
        lines.append("Pictures: " + "  ".join(report["plots"]))
    return "\n".join(lines)


def n_images(n: int) -> str:
    return f"{n} image" if n == 1 else f"{n} images"


def _num(value: float | None, width: int = 7, digits: int = 3) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def _subject_lines(subject: Mapping[str, Any]) -> list[str]:
    classes = subject["classes"]
    width = max(12, *(len(c) + 2 for c in classes))
    lines = [
        f"Subject head ({n_images(subject['n'])}): accuracy {subject['accuracy']:.3f}  "
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
        f"Source head ({n_images(source['n'])}, {source['n_ai']} AI) at threshold {source['threshold']:.3f}: "
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
            f"  uncertain band +-{band['band']:g}: {n_images(band['uncertain'])} uncertain, coverage "
            f"{band['coverage']:.3f}, accuracy outside the band {_num(band['accuracy_outside'], 0)}"
        )
    familiarity = source.get("familiarity")
    if familiarity:
        lines.append(
            f"  unfamiliar (unlike the training images): {n_images(familiarity['unfamiliar'])}, coverage "
            f"{familiarity['coverage']:.3f}, accuracy on the rest {_num(familiarity['accuracy_familiar'], 0)}; "
            f"confidently wrong {familiarity['confidently_wrong']:.3f} of all, "
            f"{_num(familiarity['confidently_wrong_familiar'], 0)} of the rest"
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
    return f"{entry['path']}  truth: {truth_text(truth)}  predicted: {guess}"


def truth_text(truth: Mapping[str, Any]) -> str:
    """ "cat, AI", or just "AI" for an image of a source-only folder."""
    source = "AI" if truth["is_ai"] else "real"
    return f"{truth['subject']}, {source}" if truth["subject"] else source
