"""The report from per-image records: slices, the subject section, the most confidently wrong images."""

from pathlib import Path

from detective.evaluation.records import Record
from detective.evaluation.report import build_report, slices
from detective.evaluation.text import format_evaluation


def record(name: str, subject: str, is_ai: bool, p: float, said: str | None = None, **facts) -> Record:
    return Record(Path(name), subject, is_ai, p, said or subject, 0.9, **facts)


def test_slices_show_a_detector_that_only_works_on_png():
    records = [
        record("a.png", "cat", False, 0.1, format="PNG", size=(512, 512)),
        record("b.png", "cat", True, 0.9, format="PNG", size=(512, 512)),
        record("c.jpg", "dog", False, 0.9, "cat", format="JPEG", size=(100, 300), jpeg_quality=95),
        record("d.jpg", "dog", True, 0.1, format="JPEG", size=(1024, 2000), jpeg_quality=60),
        record("e.jpg", "owl", True, 0.1, format="JPEG", size=(300, 400), jpeg_quality=75),
    ]
    table = slices(records, 0.5, ["cat", "dog"])
    assert table["format"]["PNG"]["source_accuracy"] == 1.0 and table["format"]["JPEG"]["source_accuracy"] == 0.0
    assert table["format"]["PNG"]["auroc"] == 1.0 and table["format"]["JPEG"]["auroc"] == 0.0
    assert list(table["size"]) == ["<256px", "256-511px", "512-1023px", ">=1024px"]
    assert [table["size"][k]["n"] for k in table["size"]] == [1, 1, 2, 1]
    assert list(table["jpeg_quality"]) == ["q<70", "q70-89", "q>=90", "non-JPEG"]
    assert table["subject"]["dog"]["subject_accuracy"] == 0.5 and table["subject"]["dog"]["real_accuracy"] == 0.0
    assert table["subject"]["owl"]["subject_accuracy"] is None  # not a subject of the checkpoint
    assert slices(records, 0.5, None)["subject"]["cat"]["subject_accuracy"] is None  # subject head not scored


def test_subject_section_only_for_subjects_the_checkpoint_knows():
    records = [record("a", "cat", False, 0.1), record("b", "dog", True, 0.9, "cat"), record("c", "newt", True, 0.9)]
    report = build_report(records, ["cat", "dog"], 0.5, 0.0).report
    assert report["subject"]["n"] == 2 and report["subject"]["accuracy"] == 0.5
    assert report["notes"] == ["subjects not known to the checkpoint: newt (1 image): no subject metrics for them"]
    assert report["source"]["n"] == 3  # the source head is scored on every image
    off = build_report(records, ["cat", "dog"], 0.5, 0.0, subject_head=False).report
    assert off["subject"] is None and off["notes"] == ["subject head off: the checkpoint predicts the source only"]
    assert all(row["subject_accuracy"] is None for row in off["slices"]["subject"].values())
    # A source-only folder (real/ and ai/ at the top) has no subjects: no subject section, and the report says why
    # instead of naming an empty subject; a wrong image's truth is just its source.
    folders = build_report([record("r", "", False, 0.2), record("a", "", True, 0.3)], ["cat", "dog"], 0.5, 0).report
    assert folders["subject"] is None and folders["source"]["accuracy"] == 0.5
    assert folders["notes"] == ["no subject folders here (source only): no subject metrics"]
    assert "truth: AI  predicted: " in format_evaluation({**folders, "root": "folder", "images": 2, "excluded": []})


def test_most_confidently_wrong_come_first_and_right_images_never():
    records = [
        record("right", "cat", True, 0.99),
        record("wrong_source", "cat", False, 0.8),
        record("very_wrong_source", "cat", True, 0.05),
        record("wrong_subject", "dog", False, 0.1, "cat"),  # subject confidence 0.9
    ]
    wrong = build_report(records, ["cat", "dog"], 0.5, 0.0).report["most_confidently_wrong"]
    assert [w["path"] for w in wrong] == ["very_wrong_source", "wrong_subject", "wrong_source"]
