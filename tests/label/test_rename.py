"""The no-clobber rename, with and without hard links, and finishing one a kill interrupted."""

import errno
import os

import pytest

from detective.label.rename import rename_no_clobber
from tests.label.helpers import listing, make, run


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


def test_a_resumed_run_finishes_a_rename_killed_between_link_and_unlink(tmp_path):
    make(tmp_path, ["d.jpg"])
    os.link(tmp_path / "d.jpg", tmp_path / "d_ai.jpg")
    run(tmp_path)
    assert listing(tmp_path) == {"d_ai.jpg": "d.jpg"}
