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


def test_one_subject_trains_the_source_head_alone(image_tree):
    report = run_audit(image_tree(balanced_names(["cat"])))
    assert report.errors == [] and not report.subject_head
    assert "source only: one subject folder ('cat')" in report.mode
    assert "Mode: source only" in format_report(report)


def test_real_and_ai_folders_at_the_top_train_the_source_head_alone(image_tree):
    names = [f"real/r{i}.png" for i in range(10)] + [f"ai/a{i}.png" for i in range(10)] + ["1_fake/x.png"]
    report = run_audit(image_tree(names))
    assert report.errors == [] and report.warnings == [] and not report.subject_head
    assert report.subjects == [] and "no subject folders (real/ai only)" in report.mode
    assert sum(n for (_, is_ai), n in report.counts["train"].items() if is_ai) == 9
    assert "(all)               ai             9" in format_report(report)


def test_one_subject_with_one_source_is_an_error(image_tree):
    report = run_audit(image_tree([f"cat/c{i}.png" for i in range(6)]))
    assert "only real images" in report.errors[0] and "nothing to learn" in report.errors[0]


def test_source_folders_beside_subject_folders_are_an_error(image_tree):
    report = run_audit(image_tree([*balanced_names(), "real/r.png", "ai/a.png"]))
    assert "2 images sit in real/ai folders at the top" in report.errors[0]


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
