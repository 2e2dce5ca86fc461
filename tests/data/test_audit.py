from pathlib import Path

import pytest

from detective.data.audit import DataError, audit, confound_warnings, format_report
from detective.data.labels import LabelRule
from detective.data.scan import Sample, scan_folder
from detective.data.split import stratified_split
from tests.helpers import balanced_names


def run_audit(root: Path, rule: LabelRule = LabelRule()):
    scan = scan_folder(root, rule)
    return audit(scan, stratified_split(scan.samples, scan.root), rule)


def test_balanced_data_has_no_findings_and_a_count_table(image_tree):
    report = run_audit(image_tree(balanced_names(per_cell=10)))
    assert report.errors == [] and report.warnings == []
    assert report.subjects == ["cat", "dog"]
    assert report.counts["train"][("cat", True)] == 8 and report.counts["test"][("dog", False)] == 1
    text = format_report(report)
    assert "cat                 real           8       1       1" in text
    assert "total" in text


def test_empty_root_is_an_error(tmp_path):
    (tmp_path / "cat").mkdir()
    report = run_audit(tmp_path)
    assert report.errors and "no readable images found under" in report.errors[0]
    with pytest.raises(DataError, match=r"expected .*/<subject>/<image>"):
        report.raise_on_error()


def test_one_subject_is_an_error(image_tree):
    report = run_audit(image_tree(balanced_names(["cat"])))
    assert "only one subject ('cat')" in report.errors[0]
    assert "needs at least two" in report.errors[0]


def test_subject_without_ai_images_is_a_warning(image_tree):
    names = [n for n in balanced_names() if not (n.startswith("dog") and "_ai" in n)]
    report = run_audit(image_tree(names))
    assert report.errors == []
    assert report.warnings == ["subject 'dog' has no AI images: the source head learns nothing there"]


def test_format_confound_is_a_warning(image_tree):
    names = [n.replace(".png", ".jpg") if "_ai" not in n else n for n in balanced_names()]
    report = run_audit(image_tree(names))
    assert len(report.warnings) == 1
    assert "differ in file format (real: JPEG 100%; AI: PNG 100%)" in report.warnings[0]


def sample(is_ai: bool, size: tuple[int, int], fmt: str = "JPEG") -> Sample:
    return Sample(Path("x.jpg"), "cat", is_ai, format=fmt, size=size)


def test_size_confound_like_the_ml72_sample_is_a_warning():
    # Every AI image 559x559, every real one large and of varied size, as in ../shared/data/real_vs_ai_sample.
    real = [sample(False, (723 + 150 * i, 900 + 100 * i)) for i in range(20)]
    ai = [sample(True, (559, 559)) for _ in range(20)]
    (warning,) = confound_warnings(real + ai)
    assert "differ in pixel size" in warning and "one size covers 5% of real, 100% of AI" in warning


def test_similar_sizes_and_formats_raise_no_confound():
    real = [sample(False, (600 + 7 * i, 400 + 5 * i)) for i in range(20)]
    ai = [sample(True, (610 + 5 * i, 410 + 3 * i)) for i in range(20)]
    assert confound_warnings(real + ai) == []


def test_substring_rule_warns_how_many_names_change(image_tree):
    root = image_tree(["cat/portrait.jpg", "cat/chair.jpg", "cat/x_ai.jpg", "dog/dog.jpg", "dog/y_ai.jpg"])
    report = run_audit(root, LabelRule(match="substring"))
    assert any("labels 2 file names differently" in w for w in report.warnings)


def test_unreadable_files_are_listed(image_tree):
    root = image_tree(balanced_names(per_cell=3))
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    report = run_audit(root)
    assert any("1 unreadable images were excluded" in w for w in report.warnings)
    assert "broken.jpg" in format_report(report)
