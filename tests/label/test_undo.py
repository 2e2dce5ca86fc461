"""Undo restores every name a journal records, after a kill too, and never replaces a file."""

import os
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from detective.data.labels import is_ai_name, is_image_name
from detective.label.journal import JOURNAL_PREFIX, read_journal
from detective.label.undo import undo
from tests.label.helpers import RULE, image_names, journals, listing, make, run, stems, write_journal


def test_undo_restores_every_name_and_is_harmless_twice(tmp_path):
    original = listing(make(tmp_path, ["a.jpg", "b c.png", "sub/d.jpg", "notes.txt"]))
    run(tmp_path, recursive=True)
    [journal] = journals(tmp_path)
    record = read_journal(journal)
    assert record.header["action"] == "tag" and len(record.entries) == 3
    assert [r.status for r in undo(record)] == ["renamed"] * 3
    assert listing(tmp_path) == original
    assert [r.status for r in undo(read_journal(journal))] == ["already"] * 3
    assert listing(tmp_path) == original


def test_undo_never_overwrites_a_file_that_took_the_old_name(tmp_path):
    make(tmp_path, ["a.jpg", "b.jpg"])
    run(tmp_path)
    (tmp_path / "a.jpg").write_text("new file")
    results = {r.dst.name: r.status for r in undo(read_journal(journals(tmp_path)[0]))}
    assert results == {"a.jpg": "conflict", "b.jpg": "renamed"}
    assert listing(tmp_path) == {"a.jpg": "new file", "a_ai.jpg": "a.jpg", "b.jpg": "b.jpg"}


def test_undo_dry_run_changes_nothing(tmp_path):
    make(tmp_path, ["a.jpg"])
    run(tmp_path)
    assert [r.status for r in undo(read_journal(journals(tmp_path)[0]), dry_run=True)] == ["renamed"]
    assert list(listing(tmp_path)) == ["a_ai.jpg"]


def test_undo_after_a_kill_at_any_point_of_a_rename(tmp_path):
    # a: renamed, outcome recorded. b: renamed, killed before its outcome. c: intent only, not renamed.
    # d: killed between link and unlink (two names, one file). e: its intent line was cut short.
    make(tmp_path, ["a_ai.jpg", "b_ai.jpg", "c.jpg", "d.jpg", "e.jpg"])
    os.link(tmp_path / "d.jpg", tmp_path / "d_ai.jpg")
    lines = [{"id": 1, "old": "a.jpg", "new": "a_ai.jpg"}, {"id": 1, "status": "done"}]
    lines += [{"id": n, "old": f"{x}.jpg", "new": f"{x}_ai.jpg"} for n, x in [(2, "b"), (3, "c"), (4, "d")]]
    journal = write_journal(tmp_path, lines, tail='{"id": 5, "old": "e.jp')
    results = {r.dst.name: r.status for r in undo(read_journal(journal))}
    assert results == {"a.jpg": "renamed", "b.jpg": "renamed", "c.jpg": "already", "d.jpg": "renamed"}
    assert listing(tmp_path) == {n: n for n in ["c.jpg", "d.jpg", "e.jpg"]} | {"a.jpg": "a_ai.jpg", "b.jpg": "b_ai.jpg"}


def test_undo_skips_attempts_that_found_the_name_taken(tmp_path):
    make(tmp_path, ["b.jpg", "b_ai.jpg"])
    journal = write_journal(tmp_path, [{"id": 1, "old": "b.jpg", "new": "b_ai.jpg"}, {"id": 1, "status": "exists"}])
    (tmp_path / "b.jpg").unlink()  # even if the old name is free now, b_ai.jpg was never ours
    assert list(undo(read_journal(journal))) == []
    assert listing(tmp_path) == {"b_ai.jpg": "b_ai.jpg"}


def test_unicode_spaces_and_undecodable_names_round_trip(tmp_path):
    names = ["mañana 01.jpg", "日本 画像.PNG", "Ελλάδα  two spaces.jpeg", "emoji 😀.webp"]
    original = listing(make(tmp_path, names))
    if sys.platform == "linux":  # file names are bytes there; this one is not valid UTF-8
        raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg")
        Path(os.fsdecode(raw)).write_text("latin-1 name")
        original[os.fsdecode(b"caf\xe9.jpg")] = "latin-1 name"
    run(tmp_path)
    assert all(is_ai_name(name) for name in listing(tmp_path))
    assert "emoji 😀_ai.webp" in listing(tmp_path)
    list(undo(read_journal(journals(tmp_path)[0])))
    assert listing(tmp_path) == original


any_names = st.one_of(
    image_names,
    st.builds(lambda stem, ext: stem + ext, stems, st.sampled_from([".txt", ".ai", "", ".JSON"])),
).filter(lambda n: n not in (".", "..") and not n.startswith(JOURNAL_PREFIX))


COLLIDING = ["x.jpg", "x_ai.jpg", "x_ai-2.jpg", "y.png", "y_ai.png", "y-AI.png"]  # new names taken, once tagged


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(any_names, max_size=8),
    st.sets(st.sampled_from(COLLIDING)),
    st.sampled_from(["skip", "number"]),
)
def test_tagging_any_names_then_undo_restores_them(names, colliding, on_conflict):
    with tempfile.TemporaryDirectory() as tmp:
        folder = make(Path(tmp), sorted(set(names) | colliding))
        original = listing(folder)
        results = run(folder, on_conflict=on_conflict)
        after = listing(folder)
        assert len(after) == len(original)
        assert sorted(after.values()) == sorted(original.values())  # same files, only names changed
        left_untagged = {r.src.name for r in results if r.status == "conflict"}
        taken = any(r.status == "conflict" or (r.dst and r.dst.name != RULE.tagged(r.src.name)) for r in results)
        event(f"{on_conflict}, a new name was taken: {taken}")  # both happen often: see --hypothesis-show-statistics
        assert on_conflict == "skip" or not left_untagged
        for name in after:
            if is_image_name(name) and name not in left_untagged:
                assert is_ai_name(name), name
        for journal in reversed(journals(folder)):
            list(undo(read_journal(journal)))
        assert listing(folder) == original
