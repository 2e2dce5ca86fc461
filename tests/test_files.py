"""`atomic_write`: the new file whole, or the old one untouched, and no temporary file left either way."""

import os

import pytest

from detective.evaluation import plots
from detective.files import atomic_write


class Interrupted(Exception):
    pass


def test_the_file_is_written_whole_and_nothing_else_is_left(tmp_path):
    path = tmp_path / "out.csv"
    with atomic_write(path, "w", newline="") as f:
        f.write("a,b\r\n")
    assert path.read_bytes() == b"a,b\r\n"
    assert os.listdir(tmp_path) == ["out.csv"]


def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"old")
    with pytest.raises(Interrupted), atomic_write(path) as f:
        f.write(b"half of the new")
        raise Interrupted
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.bin"]


def test_a_failed_rename_leaves_no_temporary_file(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError), atomic_write(tmp_path / "x.png") as f:
        f.write(b"png")
    assert os.listdir(tmp_path) == []


def test_a_picture_that_fails_to_draw_leaves_nothing(tmp_path, monkeypatch):
    def broken_savefig(self, f, **kwargs):
        f.write(b"\x89PNG half")
        raise Interrupted

    monkeypatch.setattr(plots.Figure, "savefig", broken_savefig)
    with pytest.raises(Interrupted):
        plots.confusion_matrix_plot([[1, 0], [0, 1]], ["cat", "dog"], tmp_path / "c.png")
    assert os.listdir(tmp_path) == []
