import os
from pathlib import Path

import pytest

from detective.data.labels import LabelRule
from detective.data.scan import has_split_layout, scan_folder


def test_scan_labels_images_and_counts_the_rest(image_tree):
    root = image_tree(["cat/a.jpg", "cat/b_ai.PNG", "dog/real/c.webp", "dog/ai/d.bmp", "dog/e.TIFF", "dog/f.gif"])
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / ".DS_Store").write_bytes(b"\0\0")
    (root / ".ipynb_checkpoints").mkdir()
    (root / ".ipynb_checkpoints" / "x.jpg").write_bytes(b"")
    (root / "loose.jpg").write_bytes((root / "cat" / "a.jpg").read_bytes())

    scan = scan_folder(root)

    got = {(s.path.relative_to(scan.root).as_posix(), s.subject, s.is_ai) for s in scan.samples}
    assert got == {
        ("cat/a.jpg", "cat", False),
        ("cat/b_ai.PNG", "cat", True),
        ("dog/real/c.webp", "dog", False),
        ("dog/ai/d.bmp", "dog", True),
        ("dog/e.TIFF", "dog", False),
        ("dog/f.gif", "dog", False),
    }
    assert scan.ignored_files == 1  # notes.txt; hidden files are not even counted
    assert [p.name for p in scan.unlabelled] == ["loose.jpg"]
    assert {s.format for s in scan.samples} == {"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"}
    assert all(s.size == (40, 30) for s in scan.samples)


def test_unreadable_files_are_excluded_and_reported(image_tree):
    root = image_tree(["cat/a.jpg", "dog/b.jpg"])
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "dog" / "text.jpg").write_text("hello, I am not a JPEG")
    scan = scan_folder(root)
    assert len(scan.samples) == 2
    bad = sorted(str(err) for err in scan.unreadable)
    assert len(bad) == 2
    assert "empty.jpg" in bad[0] and "text.jpg" in bad[1]


def test_symlink_loops_are_followed_once(image_tree):
    root = image_tree(["cat/a.jpg", "dog/b.jpg"])
    os.symlink(root, root / "cat" / "loop")
    scan = scan_folder(root)
    assert sorted(s.path.name for s in scan.samples) == ["a.jpg", "b.jpg"]


def test_odd_file_names(image_tree):
    names = ["cat/ünïcödé ai.jpg", "cat/with space.jpg", "dog/-AI-.png", "dog/x.y.z.jpeg"]
    scan = scan_folder(image_tree(names))
    assert {s.path.name: s.is_ai for s in scan.samples} == {
        "ünïcödé ai.jpg": True,
        "with space.jpg": False,
        "-AI-.png": True,
        "x.y.z.jpeg": False,
    }


def test_split_layout_is_detected(image_tree):
    root = image_tree(["train/cat/a.jpg", "val/cat/b_ai.jpg", "test/dog/c.jpg"])
    assert has_split_layout(root)
    scan = scan_folder(root)
    assert {(s.subject, s.split) for s in scan.samples} == {("cat", "train"), ("cat", "val"), ("dog", "test")}
    assert not has_split_layout(image_tree(["train/a.jpg", "cat/b.jpg"], root=root.parent / "mixed"))


def test_label_rule_is_applied(image_tree):
    scan = scan_folder(image_tree(["cat/chair.jpg", "cat/x_gen.jpg"]), LabelRule(token="gen"))
    assert {s.path.name: s.is_ai for s in scan.samples} == {"chair.jpg": False, "x_gen.jpg": True}
    scan = scan_folder(scan.root, LabelRule(match="substring"))
    assert {s.path.name: s.is_ai for s in scan.samples} == {"chair.jpg": True, "x_gen.jpg": False}


def test_bad_root_gives_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"data root not found: .*nowhere \(set data.root="):
        scan_folder(tmp_path / "nowhere")
    (tmp_path / "file.jpg").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        scan_folder(tmp_path / "file.jpg")
