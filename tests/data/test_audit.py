import re
from pathlib import Path

import pytest

from detective.data.audit import DataError, audit, audit_roots, confound_warnings, format_audit
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
    text = format_audit(report)
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
    assert "Mode: source only" in format_audit(report)


def test_real_and_ai_folders_at_the_top_train_the_source_head_alone(image_tree):
    names = [f"real/r{i}.png" for i in range(10)] + [f"ai/a{i}.png" for i in range(10)] + ["1_fake/x.png"]
    report = run_audit(image_tree(names))
    assert report.errors == [] and report.warnings == [] and not report.subject_head
    assert report.subjects == [] and "no subject folders (real/ai only)" in report.mode
    assert sum(n for (_, is_ai), n in report.counts["train"].items() if is_ai) == 9
    assert "(all)               ai             9" in format_audit(report)


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
    assert "broken.jpg" in format_audit(report)


def audit_of(*roots: Path, rule: LabelRule = LabelRule()):
    """What the data module does with several roots: each scanned and split on its own, then audited."""
    scans = [scan_folder(root, rule) for root in roots]
    return audit_roots(scans, [stratified_split(scan.samples, scan.root) for scan in scans], rule)


def source_names(per_source: int = 10) -> list[str]:
    """The source-only layout of detection data sets: `real/` and `ai/` at the top, no subjects."""
    return [f"real/r{i:02d}.png" for i in range(per_source)] + [f"ai/a{i:02d}.png" for i in range(per_source)]


def test_one_root_gets_the_plain_audit(image_tree):
    root = image_tree(balanced_names())
    assert audit_of(root) == run_audit(root) and audit_of(root).parts == []


def test_two_roots_are_counted_per_root_and_together_with_subjects_merged_by_name(image_tree, tmp_path):
    a = image_tree(balanced_names(("cat", "dog")), root=tmp_path / "a").resolve()
    b = image_tree(
        [f"{s}/{src}/{s}{i}.png" for s in ("cat", "owl") for src in ("real", "ai") for i in range(10)],
        root=tmp_path / "b",
    ).resolve()
    report = audit_of(a, b)
    assert report.errors == [] and report.warnings == [] and [p.warnings for p in report.parts] == [[], []]
    assert report.subjects == ["cat", "dog", "owl"] and report.subject_head
    assert [(p.root, p.subjects) for p in report.parts] == [(str(a), ["cat", "dog"]), (str(b), ["cat", "owl"])]
    assert report.counts["train"][("cat", True)] == 16 and report.parts[1].counts["train"][("cat", True)] == 8
    lines = format_audit(report).splitlines()
    assert lines[0] == f"Data audit: {a}, {b}"
    assert lines.index(f"Root {a}:") < lines.index(f"Root {b}:") < lines.index("All roots:")
    assert "    owl                 ai             8       1       1" in lines  # in b's part
    assert "  owl                 ai             8       1       1" in lines  # and in all roots'
    assert "Mode: both heads: 3 subjects, and real vs AI" in lines


def test_a_format_confound_is_reported_for_the_root_that_has_it(image_tree, tmp_path):
    jpeg_reals = [n.replace(".png", ".jpg") if "_ai" not in n else n for n in balanced_names()]
    confounded, clean = image_tree(jpeg_reals, root=tmp_path / "a"), image_tree(root=tmp_path / "b")
    part_a, part_b = audit_of(confounded, clean).parts
    (warning,) = part_a.warnings
    assert "differ in file format (real: JPEG 100%; AI: PNG 100%)" in warning and part_b.warnings == []


def test_real_images_from_one_root_and_ai_from_another_are_compared_across_roots(image_tree, tmp_path):
    reals = image_tree(source_names()[:10], root=tmp_path / "a")
    ais = image_tree([n.replace(".png", ".webp") for n in source_names()[10:]], root=tmp_path / "b")
    report = audit_of(reals, ais)
    assert report.errors == [] and "no subject folders (real/ai only)" in report.mode
    alone = [p.warnings[0].split(":")[0] for p in report.parts]  # neither root alone shows the confound
    assert alone == ["only real images in this root", "only ai images in this root"]
    (warning,) = report.warnings
    assert "differ in file format (real: PNG 100%; AI: WEBP 100%)" in warning


def test_a_root_without_subject_folders_turns_the_subject_head_off_for_all(image_tree, tmp_path):
    subjects = image_tree(balanced_names(), root=tmp_path / "a").resolve()
    flat = image_tree(source_names(), root=tmp_path / "b").resolve()
    report = audit_of(subjects, flat)
    assert report.errors == [] and not report.subject_head and report.subjects == ["cat", "dog"]
    assert "source only: roots with and roots without subject folders" in report.mode
    (warning,) = report.warnings
    assert warning.startswith(f"{flat} has no subject folders (real/ai only), so the subject folders of the other")


def test_an_empty_root_among_several_is_an_error_naming_it(image_tree, tmp_path):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    report = audit_of(image_tree(root=tmp_path / "a"), tmp_path / "empty")
    with pytest.raises(DataError, match=re.escape(f"no readable images found under {tmp_path.resolve() / 'empty'}:")):
        report.raise_on_error()


def test_roots_one_inside_the_other_are_an_error(image_tree, tmp_path):
    root = image_tree(root=tmp_path / "a").resolve()
    report = audit_of(root, root / "cat")
    with pytest.raises(DataError, match=re.escape(f"data.root names {root} and {root / 'cat'}, one inside the other")):
        report.raise_on_error()
