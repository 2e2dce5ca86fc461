"""Inputs -> image files (files, recursive folders, globs) and the default checkpoint."""

import os

from detective.predict.discover import expand_inputs, newest_checkpoint


def test_files_folders_and_globs_expand_in_order_each_file_once(image_tree, tmp_path):
    root = image_tree(["a/x.png", "a/b/y.jpg", "a/.hidden.png", "c/z.png"])
    (root / "a/notes.txt").write_text("not an image")
    found = expand_inputs([str(root / "c/z.png"), str(root / "a"), str(root / "**/*.png")])
    rel = [os.path.relpath(f, root) for f in found.files]
    assert rel == ["c/z.png", "a/x.png", "a/b/y.jpg"]  # the glob adds nothing new; hidden and .txt skipped
    assert found.errors == []


def test_explicit_non_image_file_is_kept_for_the_decoder_to_report(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert expand_inputs([str(notes)]).files == [str(notes)]


def test_missing_paths_empty_folders_and_empty_globs_are_errors_naming_them(tmp_path):
    (tmp_path / "empty").mkdir()
    found = expand_inputs(["nope.jpg", str(tmp_path / "empty"), str(tmp_path / "*.jpg")])
    assert found.files == []
    assert [p for p, _ in found.errors] == ["nope.jpg", str(tmp_path / "empty"), str(tmp_path / "*.jpg")]
    e1, e2, e3 = (e for _, e in found.errors)
    assert e1 == "no such file: nope.jpg"
    assert e2.startswith(f"{tmp_path / 'empty'}: no images in this folder (looked for .bmp")
    assert e3.startswith(f"{tmp_path / '*.jpg'}: no images match this pattern")


def test_newest_best_checkpoint_of_runs_and_multiruns(tmp_path):
    assert newest_checkpoint(tmp_path) is None
    older = tmp_path / "runs/2024-01-01_00-00-00_a/checkpoints/best.ckpt"
    newer = tmp_path / "multirun/2024-01-02_00-00-00_b/3/checkpoints/best.ckpt"
    last = tmp_path / "runs/2024-01-03_00-00-00_c/checkpoints/last.ckpt"
    for i, p in enumerate((older, newer, last)):
        p.parent.mkdir(parents=True)
        p.write_bytes(b"x")
        os.utime(p, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
    assert newest_checkpoint(tmp_path) == newer  # last.ckpt is never picked
