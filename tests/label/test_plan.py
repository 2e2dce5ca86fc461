"""Planning and applying a run over a folder: what is renamed, what is left alone, conflicts and failures."""

import errno
import os
from pathlib import Path

import pytest

from detective.label.journal import read_journal
from detective.label.plan import apply, plan_folder, start_journal
from detective.label.results import LabelError, Result
from detective.label.rule import TagRule
from detective.label.undo import undo
from tests.label.helpers import journals, listing, make, run


def statuses(results: list[Result], folder: Path) -> dict[str, str]:
    return {r.src.relative_to(folder).as_posix(): r.status for r in results}


def test_tags_images_of_any_extension_case_and_leaves_the_rest_alone(tmp_path):
    make(tmp_path, ["img_01.jpg", "B.PNG", "c.Webp", "d.tiff", "x_ai.jpg", "y-AI.png", ".hidden.jpg", "notes.txt"])
    make(tmp_path, ["logo.ai", "sub/s.jpg"])
    results = statuses(run(tmp_path), tmp_path)
    assert sorted(listing(tmp_path)) == [
        ".hidden.jpg",
        "B_ai.PNG",
        "c_ai.Webp",
        "d_ai.tiff",
        "img_01_ai.jpg",
        "logo.ai",
        "notes.txt",
        "sub/s.jpg",  # not recursive
        "x_ai.jpg",
        "y-AI.png",
    ]
    assert listing(tmp_path)["img_01_ai.jpg"] == "img_01.jpg"
    assert results["x_ai.jpg"] == results["y-AI.png"] == "already"
    assert results[".hidden.jpg"] == results["notes.txt"] == results["logo.ai"] == "not_image"


def test_recursive_tags_subfolders_but_not_hidden_ones(tmp_path):
    make(tmp_path, ["a.jpg", "cat/b.jpg", "cat/deep/c.png", ".cache/d.jpg"])
    run(tmp_path, recursive=True)
    assert sorted(listing(tmp_path)) == [".cache/d.jpg", "a_ai.jpg", "cat/b_ai.jpg", "cat/deep/c_ai.png"]
    assert [p.parent for p in journals(tmp_path)] == [tmp_path]  # one journal, at the top


def test_dry_run_predicts_the_real_run_and_changes_nothing(tmp_path):
    make(tmp_path, ["a.jpg", "b.jpg", "b_ai.jpg", "c.png"])
    before = listing(tmp_path)
    plan = plan_folder(tmp_path, on_conflict="number")
    predicted = [(r.src, r.dst, r.status) for r in apply(plan, None)]
    assert listing(tmp_path) == before
    assert journals(tmp_path) == []
    done = [(r.src, r.dst, r.status) for r in run(tmp_path, on_conflict="number") if r.status == "renamed"]
    assert predicted == done
    assert (tmp_path / "b_ai-2.jpg").read_text() == "b.jpg"


def test_a_second_run_changes_nothing(tmp_path):
    make(tmp_path, ["a.jpg", "b.PNG", "c_ai.jpg"])
    run(tmp_path)
    after_first = listing(tmp_path), journals(tmp_path)
    assert set(statuses(run(tmp_path), tmp_path).values()) == {"already"}
    assert (listing(tmp_path), journals(tmp_path)) == after_first  # no renames, and no new journal


def test_untag_is_the_inverse_of_tag(tmp_path):
    original = listing(make(tmp_path, ["a.jpg", "b c.PNG", "x_.jpg", "sub/d.webp", "already_ai.jpg"]))
    run(tmp_path, recursive=True)
    assert sorted(listing(tmp_path)) == ["a_ai.jpg", "already_ai.jpg", "b c_ai.PNG", "sub/d_ai.webp", "x__ai.jpg"]
    run(tmp_path, recursive=True, untag=True)
    original["already.jpg"] = original.pop("already_ai.jpg")  # untag also strips tags it did not add
    assert listing(tmp_path) == original


def test_untag_leaves_names_whose_token_is_not_at_the_end(tmp_path):
    make(tmp_path, ["AI-cat.jpg", "plain.jpg"])
    results = statuses(run(tmp_path, untag=True), tmp_path)
    assert results == {"AI-cat.jpg": "kept", "plain.jpg": "already"}
    assert sorted(listing(tmp_path)) == ["AI-cat.jpg", "plain.jpg"]


def test_untag_respects_collisions(tmp_path):
    make(tmp_path, ["x_ai.jpg", "x-AI.jpg", "y_ai.png", "y.png"])
    results = statuses(run(tmp_path, untag=True), tmp_path)
    assert sorted(results.values()) == ["already", "conflict", "conflict", "renamed"]
    files = listing(tmp_path)
    assert len(files) == 4
    assert files["y.png"] == "y.png" and files["y_ai.png"] == "y_ai.png"


def test_a_taken_name_is_skipped_and_reported_never_overwritten(tmp_path):
    make(tmp_path, ["b.jpg", "b_ai.jpg"])
    results = run(tmp_path)
    assert [(r.src.name, r.status) for r in results] == [("b.jpg", "conflict"), ("b_ai.jpg", "already")]
    assert listing(tmp_path) == {"b.jpg": "b.jpg", "b_ai.jpg": "b_ai.jpg"}


def test_number_on_conflict_picks_the_next_free_name(tmp_path):
    make(tmp_path, ["b.jpg", "b_ai.jpg", "b_ai-2.jpg"])
    run(tmp_path, on_conflict="number")
    assert listing(tmp_path)["b_ai-3.jpg"] == "b.jpg"
    assert len(listing(tmp_path)) == 3


def test_a_name_taken_during_the_run_is_not_overwritten(tmp_path):
    make(tmp_path, ["a.jpg", "b.jpg"])
    plan = plan_folder(tmp_path)
    (tmp_path / "b_ai.jpg").write_text("created by someone else")
    with start_journal(plan) as journal:
        results = {r.src.name: r.status for r in apply(plan, journal)}
    assert results == {"a.jpg": "renamed", "b.jpg": "conflict"}
    assert (tmp_path / "b_ai.jpg").read_text() == "created by someone else"
    list(undo(read_journal(journal.path)))
    assert listing(tmp_path) == {"a.jpg": "a.jpg", "b.jpg": "b.jpg", "b_ai.jpg": "created by someone else"}


def test_a_failed_rename_is_reported_and_the_rest_go_on(tmp_path, monkeypatch):
    make(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    real_link = os.link

    def link(src, dst, **kw):
        if Path(src).name == "b.jpg":
            raise PermissionError(errno.EACCES, "Permission denied")
        real_link(src, dst, **kw)

    monkeypatch.setattr(os, "link", link)
    results = {r.src.name: (r.status, r.detail) for r in run(tmp_path)}
    assert results == {"a.jpg": ("renamed", ""), "b.jpg": ("failed", "Permission denied"), "c.jpg": ("renamed", "")}
    assert sorted(listing(tmp_path)) == ["a_ai.jpg", "b.jpg", "c_ai.jpg"]


def test_a_tag_the_dataset_would_not_read_is_flagged(tmp_path):
    make(tmp_path, ["mismatch/a.jpg", "derived/a.jpg"])
    [result] = run(tmp_path / "mismatch", rule=TagRule("_gen", token="ai"))
    assert result.status == "renamed" and result.unrecognised
    [result] = run(tmp_path / "derived", rule=TagRule("_gen"))
    assert result.status == "renamed" and not result.unrecognised


def test_folder_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(LabelError, match="folder not found"):
        plan_folder(tmp_path / "nope")
    make(tmp_path, ["a.jpg"])
    with pytest.raises(LabelError, match="is a file"):
        plan_folder(tmp_path / "a.jpg")
