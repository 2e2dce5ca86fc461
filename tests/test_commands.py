"""Messages name detective's commands as the user started them: the clone's scripts, or the installed ones."""

import sys

import pytest

from detective.commands import command, program_name


def test_in_a_clone_the_scripts_beside_the_one_started(tmp_path, monkeypatch):
    (tmp_path / "predict.py").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py", "data.root=x"])
    assert program_name("train") == "train.py"
    assert command("predict") == "python predict.py"
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "train.py")])
    assert command("predict") == f"python {tmp_path / 'predict.py'}"


@pytest.mark.parametrize("argv0", ["/venv/bin/detective-train", "detective-train"])
def test_installed_the_console_scripts(argv0, monkeypatch):
    monkeypatch.setattr(sys, "argv", [argv0])
    assert program_name("predict") == "detective-predict"
    assert command("predict") == "detective-predict"


def test_without_a_script_beside_it_the_console_script(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "notebook")])  # e.g. training from Python
    assert program_name("label") == "label.py"
    assert command("label") == "detective-label"
