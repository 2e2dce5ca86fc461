"""label.py as a user runs it: output, summary, exit status, and runs that are killed or interrupted."""

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from detective.label.cli import PAUSE_ENV, PROGRESS_MIN, main
from detective.label.journal import JOURNAL_PREFIX
from detective.progress import ProgressBar
from tests.helpers import REPO, FakeTerminal

POSIX = pytest.mark.skipif(sys.platform == "win32", reason="stops label.py with POSIX signals")


@pytest.fixture
def folder(tmp_path):
    for name in ["img_01.jpg", "B.PNG", "c_ai.jpg", "notes.txt", ".hidden.jpg"]:
        (tmp_path / name).write_text(name)
    return tmp_path


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(JOURNAL_PREFIX))


def journal_of(folder: Path) -> Path:
    [journal] = folder.glob(JOURNAL_PREFIX + "*")
    return journal


def test_tags_a_folder_and_prints_a_summary(folder, capsys):
    assert main([str(folder)]) == 0
    out = capsys.readouterr().out
    assert names(folder) == [".hidden.jpg", "B_ai.PNG", "c_ai.jpg", "img_01_ai.jpg", "notes.txt"]
    assert f"Journal: {journal_of(folder)}" in out
    assert "Summary: 2 renamed, 1 already tagged, 2 not images (untouched), 0 skipped (new name taken), 0 failed" in out


def test_dry_run_lists_each_change_and_changes_nothing(folder, capsys):
    assert main([str(folder), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would rename: img_01.jpg -> img_01_ai.jpg" in out
    assert "would rename: B.PNG -> B_ai.PNG" in out
    assert "Summary: 2 would be renamed" in out and "nothing was changed" in out
    assert names(folder) == [".hidden.jpg", "B.PNG", "c_ai.jpg", "img_01.jpg", "notes.txt"]
    assert not list(folder.glob(JOURNAL_PREFIX + "*"))


def test_second_run_changes_nothing(folder, capsys):
    main([str(folder)])
    before = sorted(folder.iterdir())
    assert main([str(folder)]) == 0
    assert "Summary: 0 renamed, 3 already tagged" in capsys.readouterr().out
    assert sorted(folder.iterdir()) == before


def test_taken_names_are_reported_on_stderr_and_exit_1(folder, capsys):
    (folder / "img_01_ai.jpg").write_text("other")
    assert main([str(folder)]) == 1
    err = capsys.readouterr().err
    assert "skipped: img_01.jpg -> img_01_ai.jpg: the new name is taken by another file" in err
    assert "--on-conflict number" in err
    assert (folder / "img_01_ai.jpg").read_text() == "other"
    assert main([str(folder), "--on-conflict", "number", "-v"]) == 0
    assert "renamed: img_01.jpg -> img_01_ai-2.jpg" in capsys.readouterr().out


def test_untag_then_undo_round_trip(folder, capsys):
    main([str(folder)])
    assert main([str(folder), "--untag"]) == 0
    assert names(folder) == [".hidden.jpg", "B.PNG", "c.jpg", "img_01.jpg", "notes.txt"]
    [untag_journal] = [p for p in folder.glob(JOURNAL_PREFIX + "*") if '"action": "untag"' in p.read_text()]
    assert main(["--undo", str(untag_journal), "-v"]) == 0
    out = capsys.readouterr().out
    assert "restored: c.jpg -> c_ai.jpg" in out and "3 restored" in out
    assert names(folder) == [".hidden.jpg", "B_ai.PNG", "c_ai.jpg", "img_01_ai.jpg", "notes.txt"]


def test_undo_restores_and_can_be_repeated(folder, capsys):
    main([str(folder)])
    journal = journal_of(folder)
    assert main(["--undo", str(journal)]) == 0
    assert names(folder) == [".hidden.jpg", "B.PNG", "c_ai.jpg", "img_01.jpg", "notes.txt"]
    assert main(["--undo", str(journal)]) == 0
    assert "Summary: 0 restored, 2 already in place" in capsys.readouterr().out


def test_a_warning_when_the_dataset_would_not_read_the_new_names(folder, capsys):
    assert main([str(folder), "--tag", "_gen", "--token", "ai", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "img_01_gen.jpg (warning: still not read as AI by the dataset rule)" in captured.out
    assert "warning: 2 new names are still not read as AI" in captured.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{folder}/missing"], "folder not found: {folder}/missing (check the path)"),
        (["{folder}/notes.txt"], "not a folder: {folder}/notes.txt is a file"),
        (["{folder}", "--tag", "ai"], "the tag 'ai' must start with a separator"),
        (["--undo", "{folder}/nope.jsonl"], "journal not found: {folder}/nope.jsonl"),
        (["--undo", "{folder}/notes.txt"], "not a label.py journal"),
    ],
)
def test_bad_input_gives_one_clear_line_and_exit_2(folder, capsys, args, message):
    assert main([a.format(folder=folder) for a in args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"label.py: error: {message.format(folder=folder)}")
    assert captured.err.count("\n") == 1


def test_an_unreadable_folder_is_an_error(folder, capsys, monkeypatch):
    def scandir(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "scandir", scandir)  # root ignores permissions, so simulate them
    assert main([str(folder)]) == 2
    err = capsys.readouterr().err
    assert err == f"label.py: error: cannot read folder {folder}: Permission denied (check its permissions)\n"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores folder permissions")
def test_a_read_only_folder_is_an_error(folder, capsys):
    folder.chmod(0o555)
    try:
        assert main([str(folder)]) == 2
    finally:
        folder.chmod(0o755)
    assert "cannot write in" in capsys.readouterr().err
    assert names(folder) == [".hidden.jpg", "B.PNG", "c_ai.jpg", "img_01.jpg", "notes.txt"]


def test_a_folder_or_undo_is_required(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2
    assert "give either a folder to tag or --undo JOURNAL" in capsys.readouterr().err


def test_progress_bar_only_on_a_terminal_for_many_files():
    assert not ProgressBar(1000, io.StringIO(), PROGRESS_MIN).enabled
    assert not ProgressBar(10, FakeTerminal(), PROGRESS_MIN).enabled
    stream = FakeTerminal()
    bar = ProgressBar(1000, stream, PROGRESS_MIN)
    bar.update(500)
    bar.update(1000)
    assert "[###############...............] 500/1000" in stream.getvalue()
    assert stream.getvalue().endswith("] 1000/1000")


def test_label_cli_does_not_import_torch():
    code = "import sys, detective.label.cli; print(sorted({'torch', 'lightning', 'hydra'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def start_and_stop(folder: Path, after: int, sig: str = "SIGKILL") -> subprocess.CompletedProcess:
    """Run label.py on `folder` in a subprocess and send it `sig` once `after` renames are journaled."""
    env = {**os.environ, PAUSE_ENV: "0.02"}
    cmd = [sys.executable, "label.py", str(folder)]
    # A test run started in the background inherits SIGINT ignored; the child must see Ctrl-C as a user would.
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        journals = list(folder.glob(JOURNAL_PREFIX + "*"))
        if journals and journals[0].read_text().count('"done"') >= after:
            break
        time.sleep(0.01)
    proc.send_signal(getattr(signal, sig))
    out, err = proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def make_photos(folder: Path, n: int = 60) -> list[str]:
    originals = [f"photo {i:02d} é.jpg" for i in range(n)]
    for name in originals:
        (folder / name).write_text(name)
    return sorted(originals)


@POSIX
@pytest.mark.parametrize("then", ["undo", "resume"])
def test_a_killed_run_can_be_undone_or_resumed(tmp_path, capsys, then):
    originals = make_photos(tmp_path)
    start_and_stop(tmp_path, after=10)
    tagged = [n for n in names(tmp_path) if n.endswith("_ai.jpg")]
    assert 10 <= len(tagged) < 60 and len(names(tmp_path)) == 60  # stopped halfway, nothing lost
    first = journal_of(tmp_path)
    if then == "undo":
        assert main(["--undo", str(first)]) == 0
        assert names(tmp_path) == originals
        return
    assert main([str(tmp_path)]) == 0
    assert f"{60 - len(tagged)} renamed, {len(tagged)} already tagged" in capsys.readouterr().out
    assert names(tmp_path) == sorted(n.replace(".jpg", "_ai.jpg") for n in originals)
    for journal in sorted(tmp_path.glob(JOURNAL_PREFIX + "*"), key=lambda p: p != first):  # the resumed run first
        assert main(["--undo", str(journal)]) == 0
    assert names(tmp_path) == originals


@POSIX
def test_ctrl_c_stops_cleanly_and_says_how_to_resume_or_undo(tmp_path):
    originals = make_photos(tmp_path)
    stopped = start_and_stop(tmp_path, after=5, sig="SIGINT")
    assert stopped.returncode == 130
    assert "Interrupted. Resume: run the same command again. Undo: python label.py --undo" in stopped.stderr
    assert main(["--undo", str(journal_of(tmp_path))]) == 0
    assert names(tmp_path) == originals
