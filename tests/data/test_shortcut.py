import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.functional.classification import binary_auroc

from detective.data.audit import SHORTCUT_ALARM, audit, audit_roots, format_audit
from detective.data.images import _QUALITY_TABLES, jpeg_quality, opened_header
from detective.data.scan import scan_folder
from detective.data.shortcut import (
    FileFacts,
    auroc,
    cv_auroc,
    feature_matrix,
    fit_logistic,
    fold_ids,
    read_facts,
    shortcut_check,
)
from detective.data.split import stratified_split

JPEG_75 = {"ext": "jpg", "quality": 75}


def write(path: Path, size: tuple[int, int], seed: int, ext: str, **save) -> None:
    """A random-pixel image; `save` goes to Pillow (quality, exif)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path.with_suffix(f".{ext}"), **save)


def two_source_tree(root: Path, real: dict, ai: dict, per_cell: int = 15) -> Path:
    """`cat` and `dog`, `per_cell` real and AI images each; `real`/`ai` hold size, ext and Pillow save options
    (15 per cell leaves 22 train images per source, above the check's minimum)."""
    for s, subject in enumerate(("cat", "dog")):
        for i in range(per_cell):
            for is_ai, options in ((False, real), (True, ai)):
                options = dict(options)
                name = f"{subject}_{i:03d}{'_ai' if is_ai else ''}"
                write(root / subject / name, options.pop("size", (64, 64)), 1000 * s + 2 * i + is_ai, **options)
    return root


def run_audit(root: Path):
    scan = scan_folder(root)
    return audit(scan, stratified_split(scan.samples, scan.root))


def shortcut_warning(report) -> str:
    (warning,) = [w for w in report.warnings if w.startswith("file metadata alone")]
    return warning


def exif_bytes() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"  # Make
    return exif.tobytes()


@pytest.mark.parametrize("quality", [1, 10, 50, 75, 90, 95, 100])
def test_jpeg_quality_recovers_the_quality_pillow_saved_at(quality):
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), "gray").save(buf, "JPEG", quality=quality)
    with opened_header(buf.getvalue()) as im:
        assert jpeg_quality(im) == quality


def test_jpeg_quality_between_two_tables_is_the_lower_and_an_odd_table_gives_none():
    low, high = _QUALITY_TABLES[50], _QUALITY_TABLES[51]  # quality 51 and 52
    table = low.copy()
    budget = int(np.abs(high - low).sum()) // 2
    for i in np.flatnonzero(high != low):  # walk half the way from 51's table towards 52's
        step = min(abs(int(high[i] - low[i])), budget) * np.sign(high[i] - low[i])
        table[i] += step
        budget -= abs(step)
    assert np.abs(table - low).sum() == np.abs(table - high).sum()  # equally near both
    assert jpeg_quality(SimpleNamespace(quantization={0: table.tolist()})) == 51
    assert jpeg_quality(SimpleNamespace(quantization={0: [16] * 63})) is None


def test_jpeg_quality_is_none_for_other_formats():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    with opened_header(buf.getvalue()) as im:
        assert jpeg_quality(im) is None


def test_file_facts_come_from_the_header(tmp_path):
    write(tmp_path / "cat" / "a", (48, 32), 0, "jpg", quality=60, exif=exif_bytes())
    write(tmp_path / "cat" / "b", (20, 30), 1, "tif")
    a, b = scan_folder(tmp_path).samples
    assert read_facts(a) == FileFacts("JPEG", (48, 32), 60, True, (tmp_path / "cat" / "a.jpg").stat().st_size)
    # A TIFF's own tags are no EXIF block.
    assert read_facts(b).exif is False and read_facts(b).jpeg_quality is None


def test_feature_matrix_has_a_column_per_format_present_and_one_per_other_feature():
    facts = [FileFacts("JPEG", (100, 50), 80, True, 1000), FileFacts("PNG", (10, 10), None, False, 300)]
    x, columns = feature_matrix(facts)
    assert columns == [
        "format", "format", "width", "height", "aspect ratio", "JPEG quality", "EXIF", "bytes per pixel"
    ]  # fmt: skip
    np.testing.assert_allclose(x[0], [1, 0, np.log(100), np.log(50), 2.0, 80, 1, np.log(0.2)])
    np.testing.assert_allclose(x[1], [0, 1, np.log(10), np.log(10), 1.0, 0, 0, np.log(3.0)])


def test_auroc_matches_torchmetrics_with_ties():
    rng = np.random.default_rng(0)
    scores, labels = rng.integers(0, 6, 300).astype(np.float64), rng.random(300) < 0.3
    expected = binary_auroc(torch.from_numpy(scores), torch.from_numpy(labels).long()).item()
    assert auroc(scores, labels) == pytest.approx(expected, abs=1e-6)


def test_logistic_fit_reaches_the_penalised_optimum_on_separable_data():
    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    x = np.column_stack([y * 10 + rng.normal(size=60), rng.normal(size=60)])
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    w = fit_logistic(x, y.astype(np.float64), l2=0.01)
    a = np.column_stack([x, np.ones(60)])
    grad = a.T @ (1 / (1 + np.exp(-a @ w)) - y) / 60 + 0.01 * np.r_[w[:-1], 0]
    assert np.abs(grad).max() < 1e-8
    assert w[0] > 1 and abs(w[1]) < w[0] / 5  # the separating feature carries the weight


def test_folds_are_stratified_by_source_and_fixed_by_the_seed():
    y = np.arange(53) < 23
    ids = fold_ids(y, 5, seed=3)
    for k in range(5):
        assert (ids[y] == k).sum() in (4, 5) and (ids[~y] == k).sum() == 6
    np.testing.assert_array_equal(ids, fold_ids(y, 5, seed=3))
    assert not np.array_equal(ids, fold_ids(y, 5, seed=4))


def test_cross_validated_auroc_is_deterministic_and_seed_dependent():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)), np.arange(60) % 2 == 0
    x[:, 0] += 0.8 * y
    assert cv_auroc(x, y, seed=1) == cv_auroc(x, y, seed=1)
    assert len({cv_auroc(x, y, seed=s) for s in range(4)}) > 1


def test_format_and_size_differences_are_found_and_named(tmp_path):
    root = two_source_tree(tmp_path, real={"size": (96, 80), **JPEG_75}, ai={"size": (64, 64), "ext": "png"})
    report = run_audit(root)
    assert report.shortcut.auroc >= 0.95
    warning = shortcut_warning(report)
    assert "format 1.00" in warning and "width 1.00" in warning and "height 1.00" in warning
    assert "save both in one format" in warning and "resize both alike" in warning


def test_exif_on_one_source_only_is_found_and_named(tmp_path):
    root = two_source_tree(tmp_path, real={**JPEG_75, "exif": exif_bytes()}, ai=JPEG_75)
    report = run_audit(root)
    assert report.shortcut.auroc >= 0.95
    assert report.shortcut.giveaways(0.7)[0] == "EXIF"
    assert "EXIF 1.00" in shortcut_warning(report)


def test_same_format_size_and_quality_give_no_warning(tmp_path):
    report = run_audit(two_source_tree(tmp_path, real=JPEG_75, ai=JPEG_75, per_cell=30))  # 48 train per source
    assert abs(report.shortcut.auroc - 0.5) < 0.2 and report.shortcut.auroc < SHORTCUT_ALARM
    assert report.warnings == []
    assert set(report.shortcut.giveaways(0.7)) <= {"bytes per pixel"}  # the only feature left that varies


def test_format_audit_shows_the_check(tmp_path):
    report = run_audit(two_source_tree(tmp_path, real={"size": (96, 80), **JPEG_75}, ai={"ext": "png"}))
    assert (
        "Shortcut check: a classifier on file metadata alone (format, size, JPEG quality, EXIF, bytes per pixel) "
        "tells AI from real with AUROC 1.00 (5-fold CV on the 44 train images)"
    ) in format_audit(report).splitlines()
    assert "WARNING: file metadata alone tells AI from real (AUROC 1.00;" in format_audit(report)


def test_too_few_images_of_a_source_skip_the_check_with_a_reason(tmp_path):
    report = run_audit(two_source_tree(tmp_path, real=JPEG_75, ai={"ext": "png"}, per_cell=8))
    assert report.shortcut.auroc is None
    assert "Shortcut check: skipped, the train split has 12 real and 12 AI images, under 20 of a source" in (
        format_audit(report)
    )


def test_a_file_gone_since_the_scan_is_left_out(tmp_path):
    scan = scan_folder(two_source_tree(tmp_path, real=JPEG_75, ai={"ext": "png"}, per_cell=12))
    train = scan.samples[:-1]
    train[0].path.unlink()
    check = shortcut_check(train)
    assert check.images == len(train) - 1 and check.auroc == 1.0


def test_the_check_runs_for_each_root_and_for_all_of_them(tmp_path):
    confounded = two_source_tree(tmp_path / "a", real=JPEG_75, ai={"ext": "png"})
    clean = two_source_tree(tmp_path / "b", real=JPEG_75, ai=JPEG_75, per_cell=30)
    scans = [scan_folder(root) for root in (confounded, clean)]
    report = audit_roots(scans, [stratified_split(scan.samples, scan.root) for scan in scans])
    (part_a, part_b) = report.parts
    assert part_a.shortcut.auroc == 1.0 and "format 1.00" in shortcut_warning(part_a)
    assert part_b.shortcut.auroc < SHORTCUT_ALARM and part_b.warnings == []
    assert (part_a.shortcut.images, part_b.shortcut.images) == (44, 96)
    assert report.shortcut.images == 140 and report.shortcut.auroc < SHORTCUT_ALARM  # diluted: why roots get theirs
