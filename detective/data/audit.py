"""The data audit printed before training: what was found, and what would make training go wrong.

Errors stop a run (nothing to learn); warnings are printed and the run goes on. The format and
pixel-size checks exist because a real-vs-AI detector happily learns "PNG, 512x512" instead of
"AI-generated" when the two sources differ that way; the shortcut check (`shortcut`) measures the
same danger over all file metadata at once. With several roots, each root is checked on its own
and then all of them together: real photos from one collection and AI images from another can
differ in ways neither collection shows alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

from detective.data.labels import LabelRule, substring_rule_changes
from detective.data.scan import Sample, ScanResult
from detective.data.shortcut import ShortcutCheck, shortcut_check
from detective.data.split import merge_splits

SOURCE_NAMES = {False: "real", True: "ai"}
FORMAT_GAP = 0.5  # total-variation distance of the format mixes of real and AI images
SIZE_RATIO = 2.0  # ratio of median pixel counts
ONE_SIZE_SHARE = 0.9  # share of one source's images having a single exact size
SHORTCUT_ALARM = 0.8  # AUROC of the metadata classifier that earns a warning
GIVEAWAY = 0.7  # AUROC of one feature alone for the warning to name it


class DataError(ValueError):
    """The data cannot be trained on; the message says what to fix."""


@dataclass
class AuditReport:
    """Counts and findings, kept as data so tests and callers can check them without parsing text."""

    root: str
    counts: dict[str, Counter] = field(default_factory=dict)  # split -> Counter[(subject, is_ai)]
    subjects: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    ignored_files: int = 0  # non-image files
    subject_head: bool = True  # False: source-only data (no subject folders, or just one)
    mode: str = ""  # which heads train, and why
    shortcut: ShortcutCheck | None = None  # None only when nothing was found to check
    parts: list[AuditReport] = field(default_factory=list)  # one per root when data.root names several

    def raise_on_error(self) -> None:
        errors = self.errors + [e for part in self.parts for e in part.errors]  # roots named twice: the first fix
        if errors:
            raise DataError(errors[0])


def _tv_distance(a: Counter, b: Counter) -> float:
    na, nb = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in set(a) | set(b))


def confound_warnings(samples: Sequence[Sample]) -> list[str]:
    """Warn when real and AI images differ systematically in file format or pixel size."""
    real = [s for s in samples if not s.is_ai]
    ai = [s for s in samples if s.is_ai]
    if not real or not ai:
        return []
    found = []
    fmt_real, fmt_ai = Counter(s.format for s in real), Counter(s.format for s in ai)
    if _tv_distance(fmt_real, fmt_ai) >= FORMAT_GAP:
        found.append(
            f"real and AI images differ in file format (real: {_mix(fmt_real)}; AI: {_mix(fmt_ai)}): "
            "a detector may learn the format, not the source; convert both to one format"
        )
    area_real = median(w * h for w, h in (s.size for s in real))
    area_ai = median(w * h for w, h in (s.size for s in ai))
    ratio = max(area_real, area_ai) / max(min(area_real, area_ai), 1)
    one_real = Counter(s.size for s in real).most_common(1)[0][1] / len(real)
    one_ai = Counter(s.size for s in ai).most_common(1)[0][1] / len(ai)
    lopsided = max(one_real, one_ai) >= ONE_SIZE_SHARE and min(one_real, one_ai) < ONE_SIZE_SHARE / 2
    if ratio >= SIZE_RATIO or lopsided:
        found.append(
            f"real and AI images differ in pixel size (median real {_side(area_real)}, AI {_side(area_ai)}; "
            f"one size covers {one_real:.0%} of real, {one_ai:.0%} of AI): a detector may learn size or "
            "resampling traces, not the source; collect both at similar sizes"
        )
    return found


# What to do about each feature that gives the source away; sizes share one fix.
_SIZE_FIX = "collect both at the same sizes or resize both alike"
SHORTCUT_FIXES = {
    "format": "save both in one format",
    "width": _SIZE_FIX,
    "height": _SIZE_FIX,
    "aspect ratio": _SIZE_FIX,
    "JPEG quality": "re-encode both at one JPEG quality (data.augment.jpeg_prob hides only part of it)",
    "EXIF": "EXIF on one source only means another processing history (camera files vs re-saved ones)",
    "bytes per pixel": "one source compresses better (less detail or noise): maybe the trace itself, maybe "
    "denoising, resizing or another encoder",
}


def shortcut_warnings(check: ShortcutCheck) -> list[str]:
    """Warn when file metadata alone tells the sources apart, naming the features that do it and their fixes."""
    if check.auroc is None or check.auroc < SHORTCUT_ALARM:
        return []
    named = check.giveaways(GIVEAWAY) or check.giveaways(0.0)[:2]  # no single one: the strongest two
    culprits = ", ".join(f"{name} {check.feature_aurocs[name]:.2f}" for name in named)
    fixes = "; ".join(dict.fromkeys(SHORTCUT_FIXES[name] for name in named))
    return [
        f"file metadata alone tells AI from real (AUROC {check.auroc:.2f}; each feature alone: {culprits}): "
        f"a detector may learn these, not the source; {fixes}"
    ]


def shortcut_line(check: ShortcutCheck) -> str:
    """The shortcut check's result (or why it did not run) for the console."""
    what = "a classifier on file metadata alone (format, size, JPEG quality, EXIF, bytes per pixel)"
    if check.auroc is None:
        return f"Shortcut check: skipped, {check.skipped} ({what})"
    return (
        f"Shortcut check: {what} tells AI from real with AUROC {check.auroc:.2f} "
        f"({check.folds}-fold CV on the {check.images} train images)"
    )


def _mix(counter: Counter) -> str:
    total = sum(counter.values())
    return ", ".join(f"{k or '?'} {v / total:.0%}" for k, v in counter.most_common(3))


def _side(area: float) -> str:
    return f"~{area**0.5:.0f}px square"


def audit(scan: ScanResult, splits: Mapping[str, Sequence[Sample]], rule: LabelRule = LabelRule()) -> AuditReport:
    """Check a scanned and split data set; errors make training pointless, warnings deserve a look."""
    report = _inspect_root(scan, splits, rule)
    if not report.errors:
        _judge(report, scan.samples, splits)
        _compare_sources(report, scan.samples, splits)
    return report


def audit_roots(
    scans: Sequence[ScanResult], splits: Sequence[Mapping[str, Sequence[Sample]]], rule: LabelRule = LabelRule()
) -> AuditReport:
    """`audit` of several roots (one scan and its splits each): every root's files on their own (`parts`), then
    the data as a whole, subjects merged by name, where real and AI images from different roots may differ in
    ways no single root shows. One root gets the plain `audit`."""
    if len(scans) == 1:
        return audit(scans[0], splits[0], rule)
    parts = [_inspect_root(scan, part, rule) for scan, part in zip(scans, splits, strict=True)]
    merged = merge_splits(splits)
    samples = [s for scan in scans for s in scan.samples]
    report = AuditReport(", ".join(part.root for part in parts), _counts(merged), parts=parts)
    report.ignored_files = sum(part.ignored_files for part in parts)
    report.errors += _overlaps([scan.root for scan in scans])
    if report.errors or any(part.errors for part in parts):
        return report
    for scan, split, part in zip(scans, splits, parts, strict=True):
        part.warnings += _one_source_warnings(scan.samples)
        _compare_sources(part, scan.samples, split)
    _judge(report, samples, merged)
    flat = [part.root for part in parts if not part.subjects]
    if flat and report.subjects:
        report.warnings.append(
            f"{', '.join(flat)} {'has' if len(flat) == 1 else 'have'} no subject folders (real/ai only), so the "
            "subject folders of the other roots train no subject head either: give every root subject folders "
            "to learn subjects"
        )
    _compare_sources(report, samples, merged)
    return report


def _counts(splits: Mapping[str, Sequence[Sample]]) -> dict[str, Counter]:
    return {name: Counter((s.subject, s.is_ai) for s in part) for name, part in splits.items()}


def _one_source_warnings(samples: Sequence[Sample]) -> list[str]:
    """One of several roots holding a single source: fine, but the collection itself may become the cue."""
    sources = {s.is_ai for s in samples}
    if len(sources) > 1:
        return []
    return [
        f"only {SOURCE_NAMES[sources.pop()]} images in this root: what sets the collection apart (camera, scenes, "
        "processing) may be learned as the source; the checks of all roots below compare it with the others"
    ]


def _overlaps(roots: Sequence[Path]) -> list[str]:
    """Errors for roots that are the same folder or one inside the other: their images would count twice."""
    return [
        f"data.root names {a} and {b}, one inside the other: their images would count twice; name each folder once"
        for i, a in enumerate(roots)
        for b in roots[i + 1 :]
        if a.is_relative_to(b) or b.is_relative_to(a)
    ]


def _inspect_root(scan: ScanResult, splits: Mapping[str, Sequence[Sample]], rule: LabelRule) -> AuditReport:
    """One root's counts and layout, and what its files say: unreadable, outside any subject folder, or labelled
    in a way worth a second look."""
    report = AuditReport(str(scan.root), _counts(splits), ignored_files=scan.ignored_files)
    report.subjects = sorted({s.subject for s in scan.samples if s.subject})
    report.unreadable = [str(err) for err in scan.unreadable]
    layout = f"{scan.root}/train/<subject>/<image>" if scan.split_layout else f"{scan.root}/<subject>/<image>"
    if not scan.samples:
        report.errors.append(f"no readable images found under {scan.root}: expected {layout} (e.g. cat/img_01.jpg)")
        return report
    loose = sum(not s.subject for s in scan.samples)
    if loose and report.subjects:
        report.errors.append(
            f"{loose} images sit in real/ai folders at the top of {scan.root}, beside subject folders "
            f"({', '.join(report.subjects[:3])}): move them into a subject folder, or the subject folders into real/ai"
        )
        return report
    disagree = sum(s.name_disagrees for s in scan.samples)
    if disagree:
        report.warnings.append(
            f"{disagree} images in a real folder carry the {rule.token!r} token in their name; the folder wins"
        )
    if rule.match == "substring":
        changed = substring_rule_changes(scan.names, rule.token)
        report.warnings.append(
            f"substring matching of {rule.token!r} labels {changed} file names differently from the token rule "
            "(e.g. 'portrait.jpg' counts as AI); use data.labels.match=token unless your data needs it"
        )
    if scan.unlabelled:
        report.warnings.append(
            f"{len(scan.unlabelled)} images sit outside any subject folder and were skipped (e.g. {scan.unlabelled[0]})"
        )
    if scan.unreadable:
        report.warnings.append(f"{len(scan.unreadable)} unreadable images were excluded (listed below)")
    return report


def _compare_sources(report: AuditReport, samples: Sequence[Sample], splits: Mapping[str, Sequence[Sample]]) -> None:
    """The shortcuts a detector could learn: real and AI images that differ in format, size or file metadata."""
    report.warnings += confound_warnings(samples)
    report.shortcut = shortcut_check(splits.get("train", []))
    report.warnings += shortcut_warnings(report.shortcut)


def _judge(report: AuditReport, samples: Sequence[Sample], splits: Mapping[str, Sequence[Sample]]) -> None:
    """What can be learned from the data as a whole: the mode, subjects lacking a source, empty splits."""
    _choose_mode(report, samples)
    for subject in report.subjects if report.subject_head else []:
        sources = {s.is_ai for s in samples if s.subject == subject}
        if len(sources) == 1:
            missing = "AI" if True not in sources else "real"
            report.warnings.append(f"subject {subject!r} has no {missing} images: the source head learns nothing there")
    for name, part in splits.items():
        if not part and name in ("train", "val"):
            report.warnings.append(f"the {name} split is empty: add images or change data.val_fraction")


def _choose_mode(report: AuditReport, samples: Sequence[Sample]) -> None:
    """Both heads with two or more subjects and every image in one; the source head alone with no subject folders
    (real/ai only), one, or roots of both kinds; an error where nothing can be learned."""
    report.subjects = sorted({s.subject for s in samples if s.subject})
    flat = any(not s.subject for s in samples)
    report.subject_head = len(report.subjects) >= 2 and not flat
    if report.subject_head:
        report.mode = f"both heads: {len(report.subjects)} subjects, and real vs AI"
        return
    if flat and report.subjects:
        why = "roots with and roots without subject folders"
    elif report.subjects:
        why = f"one subject folder ({report.subjects[0]!r})"
    else:
        why = "no subject folders (real/ai only)"
    report.mode = f"source only: {why}, so the subject head is off and only real vs AI is learned"
    if len({s.is_ai for s in samples}) < 2:
        have = "AI" if samples[0].is_ai else "real"
        report.errors.append(
            f"{why} and only {have} images under {report.root}: nothing to learn; add the other source "
            "(an `ai` token in file names, or real/ and ai/ folders) or at least two subject folders"
        )


def format_audit(report: AuditReport) -> str:
    """The audit for the console: each root's part when there are several, then the data as a whole."""
    lines = [f"Data audit: {report.root}"]
    for part in report.parts:
        lines += [f"Root {part.root}:", *(f"  {line}" for line in _section(part))]
    if report.parts:
        lines.append("All roots:")
    return "\n".join(lines + _section(report))


def _section(report: AuditReport) -> list[str]:
    """A table of subject x source counts per split (subjects only where they are learned or, for one of several
    roots, found), then the findings."""
    cols = [split for split in ("train", "val", "test") if split in report.counts]
    lines = [f"  {'subject':<20}{'source':<8}" + "".join(f"{c:>8}" for c in cols)]
    for subject in (report.subjects if report.subject_head else []) or [""]:
        for is_ai in (False, True):
            row = [
                sum(n for (s, a), n in report.counts[c].items() if a == is_ai and (s == subject or not subject))
                for c in cols
            ]
            lines.append(f"  {subject or '(all)':<20}{SOURCE_NAMES[is_ai]:<8}" + "".join(f"{n:>8}" for n in row))
    totals = [sum(report.counts[c].values()) for c in cols]
    lines.append(f"  {'total':<28}" + "".join(f"{n:>8}" for n in totals))
    if report.ignored_files:
        lines.append(f"  ({report.ignored_files} non-image files ignored)")
    if report.mode:
        lines.append(f"Mode: {report.mode}")
    if report.shortcut is not None:
        lines.append(shortcut_line(report.shortcut))
    lines += [f"ERROR: {e}" for e in report.errors]
    lines += [f"WARNING: {w}" for w in report.warnings]
    lines += [f"  unreadable: {u}" for u in report.unreadable]
    return lines
