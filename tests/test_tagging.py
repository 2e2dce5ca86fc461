import errno
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from detective import tagging
from detective.data.labels import IMAGE_EXTENSIONS, is_ai_name, is_image_name
from detective.tagging import (
    JOURNAL_PREFIX,
    Journal,
    LabelError,
    TagRule,
    apply,
    plan_folder,
    read_journal,
    rename_no_clobber,
    undo,
)

RULE = TagRule()


def make(folder: Path, names: list[str]) -> Path:
    """Create files whose content is their own name, so a test can tell files apart after renames."""
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    return folder


def listing(folder: Path) -> dict[str, str]:
    """Relative path -> content of every file except journals."""
    return {
        p.relative_to(folder).as_posix(): p.read_text()
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(JOURNAL_PREFIX)
    }


def journals(folder: Path) -> list[Path]:
    return sorted(folder.glob(JOURNAL_PREFIX + "*"))


def run(folder: Path, **options) -> list[tagging.Result]:
    """Plan and apply a real (journaled) run; returns every result, the files left alone included."""
    plan = plan_folder(folder, options.pop("rule", RULE), **options)
    if not plan.renames:
        return plan.others
    with Journal.create(plan) as journal:
        return plan.others + list(apply(plan, journal))


def statuses(results: list[tagging.Result], folder: Path) -> dict[str, str]:
    return {r.src.relative_to(folder).as_posix(): r.status for r in results}


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "tagged"),
    [("img_01.jpg", "img_01_ai.jpg"), ("a.b.JPEG", "a.b_ai.JPEG"), ("my photo é.png", "my photo é_ai.png")],
)
def test_tag_goes_before_the_extension_which_keeps_its_case(name, tagged):
    assert RULE.tagged(name) == tagged


@pytest.mark.parametrize("name", ["x_ai.jpg", "x-AI.png", "cat.ai.jpg", "AI-cat.webp", "x (AI).gif"])
def test_names_with_the_dataset_token_count_as_tagged(name):
    assert RULE.is_tagged(name)


@pytest.mark.parametrize("name", ["portrait.jpg", "chair.png", "said.jpg", "x_a_i.jpg"])
def test_names_without_the_token_are_not_tagged(name):
    assert not RULE.is_tagged(name)


@pytest.mark.parametrize(
    ("name", "untagged"),
    [
        ("x_ai.jpg", "x.jpg"),
        ("x-AI.png", "x.png"),
        ("x_AI.JPG", "x.JPG"),
        ("cat.ai.jpg", "cat.jpg"),
        ("dog - ai.png", "dog.png"),
        ("x__ai.jpg", "x_.jpg"),  # exactly the tag is removed, so untag inverts a tag of `x_.jpg`
        ("AI-cat.jpg", None),  # the token is not at the end
        ("x (ai).png", None),
        ("x_ai_2.png", None),
        ("_ai.jpg", None),  # nothing visible would be left
    ],
)
def test_untag_removes_only_a_trailing_tag(name, untagged):
    assert RULE.untagged(name) == untagged


def test_the_token_comes_from_the_tag_unless_given():
    assert TagRule("_gen").token == "gen"
    assert TagRule("-Gen2").recognised("x-gen2.png")
    assert TagRule("_gen", token="ai").token == "ai"


@pytest.mark.parametrize("tag", ["ai", "_", "_a/i", ""])
def test_unusable_tags_are_refused_with_the_fix(tag):
    with pytest.raises(LabelError, match="tag"):
        TagRule(tag)


stems = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"), min_size=1, max_size=30)
image_names = st.builds(
    lambda stem, ext, upper: stem + (ext.upper() if upper else ext),
    stems,
    st.sampled_from(sorted(IMAGE_EXTENSIONS)),
    st.booleans(),
).filter(is_image_name)


@given(image_names)
def test_any_image_name_tagged_with_the_default_tag_is_read_as_ai(name):
    tagged = RULE.tagged(name)
    assert is_image_name(tagged)
    assert is_ai_name(tagged)
    assert RULE.is_tagged(tagged)


@given(image_names)
def test_untag_inverts_tag(name):
    if not RULE.is_tagged(name):
        assert RULE.untagged(RULE.tagged(name)) == name


# --- folders -------------------------------------------------------------------------------------


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
    with Journal.create(plan) as journal:
        results = {r.src.name: r.status for r in apply(plan, journal)}
    assert results == {"a.jpg": "renamed", "b.jpg": "conflict"}
    assert (tmp_path / "b_ai.jpg").read_text() == "created by someone else"
    list(undo(read_journal(journal.path)))
    assert listing(tmp_path) == {"a.jpg": "a.jpg", "b.jpg": "b.jpg", "b_ai.jpg": "created by someone else"}


@pytest.mark.parametrize("hard_links", [True, False])
def test_rename_no_clobber_refuses_a_taken_name(tmp_path, monkeypatch, hard_links):
    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")  # what FAT/exFAT answer

    if not hard_links:
        monkeypatch.setattr(os, "link", no_links)
    make(tmp_path, ["a", "b", "c"])
    with pytest.raises(FileExistsError):
        rename_no_clobber(tmp_path / "a", tmp_path / "b")
    rename_no_clobber(tmp_path / "c", tmp_path / "d")
    assert listing(tmp_path) == {"a": "a", "b": "b", "d": "c"}


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


# --- journal and undo ----------------------------------------------------------------------------


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


def write_journal(folder: Path, lines: list[dict], tail: str = "") -> Path:
    header = {"journal": "detective-label", "version": 1, "action": "tag"}
    path = folder / f"{JOURNAL_PREFIX}test.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in [header, *lines]) + tail)
    return path


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


def test_a_resumed_run_finishes_a_rename_killed_between_link_and_unlink(tmp_path):
    make(tmp_path, ["d.jpg"])
    os.link(tmp_path / "d.jpg", tmp_path / "d_ai.jpg")
    run(tmp_path)
    assert listing(tmp_path) == {"d_ai.jpg": "d.jpg"}


def test_undo_skips_attempts_that_found_the_name_taken(tmp_path):
    make(tmp_path, ["b.jpg", "b_ai.jpg"])
    journal = write_journal(tmp_path, [{"id": 1, "old": "b.jpg", "new": "b_ai.jpg"}, {"id": 1, "status": "exists"}])
    (tmp_path / "b.jpg").unlink()  # even if the old name is free now, b_ai.jpg was never ours
    assert list(undo(read_journal(journal))) == []
    assert listing(tmp_path) == {"b_ai.jpg": "b_ai.jpg"}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([{"id": 1, "old": "../outside.jpg", "new": "x.jpg"}], "outside its folder"),
        ([{"id": 1, "old": "/etc/passwd", "new": "x.jpg"}], "outside its folder"),
        (["not json"], "damaged journal"),
    ],
)
def test_a_damaged_journal_is_refused(tmp_path, lines, message):
    path = write_journal(tmp_path, [])
    path.write_text(path.read_text() + "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    with pytest.raises(LabelError, match=message):
        read_journal(path)


def test_not_a_journal_or_missing_is_refused(tmp_path):
    with pytest.raises(LabelError, match="journal not found"):
        read_journal(tmp_path / "nope.jsonl")
    (tmp_path / "x.jsonl").write_text('{"hello": 1}\n')
    with pytest.raises(LabelError, match=r"not a label\.py journal"):
        read_journal(tmp_path / "x.jsonl")


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


# --- property ------------------------------------------------------------------------------------

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
