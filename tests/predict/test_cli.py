"""predict.py as a user runs it: output formats, inputs, threshold, errors and exit codes."""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detective.commands import command
from detective.constants import PREDICT_SPIN_COUNT
from detective.predict.cli import main
from tests.helpers import REPO


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tree_pngs(tiny_tree) -> list[Path]:
    """Four image files of the tree the trained checkpoint learnt from."""
    return sorted(tiny_tree.rglob("*.png"))[:4]


def test_text_line_per_image(trained_checkpoint, tree_pngs):
    code, out, err = run(str(tree_pngs[0]), "--checkpoint", str(trained_checkpoint), "--device", "cpu")
    assert (code, err) == (0, "")
    line = out.strip()
    assert line.startswith(f"{tree_pngs[0]}  Object: ") and "Source: " in line and "(AI probability 0." in line


@pytest.mark.parametrize(("chosen", "spin"), [(None, str(PREDICT_SPIN_COUNT)), ("300000", "300000")])
def test_the_network_s_threads_spin_briefly_before_sleeping_unless_the_user_chose(
    trained_checkpoint, tree_pngs, monkeypatch, chosen, spin
):
    """Set before torch loads libgomp: parsing imports no torch (the import test below)."""
    if chosen is None:
        monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    else:
        monkeypatch.setenv("GOMP_SPINCOUNT", chosen)
    assert run(str(tree_pngs[0]), "--checkpoint", str(trained_checkpoint), "--device", "cpu")[0] == 0
    assert os.environ["GOMP_SPINCOUNT"] == spin


def test_json_lines_with_top_k_and_threshold_override(trained_checkpoint, tree_pngs):
    code, out, _ = run(*map(str, tree_pngs), "--checkpoint", str(trained_checkpoint), "--json", "--top-k", "2")
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["path"] for r in records] == [str(p) for p in tree_pngs]
    saved = torch.load(trained_checkpoint, weights_only=True)["hyper_parameters"]["threshold"]
    for r in records:
        assert set(r) >= {"subject", "subject_confidence", "top_k", "ai_probability", "is_ai", "threshold"}
        assert len(r["top_k"]) == 2
        assert r["top_k"][0] == {"subject": r["subject"], "probability": r["subject_confidence"]}
        assert r["threshold"] == pytest.approx(saved) and r["is_ai"] == (r["ai_probability"] >= r["threshold"])
    _, out, _ = run(*map(str, tree_pngs), "--checkpoint", str(trained_checkpoint), "--json", "--threshold", "1")
    assert all(json.loads(line)["threshold"] == 1.0 for line in out.splitlines())
    assert not any(json.loads(line)["is_ai"] for line in out.splitlines())


def test_folder_and_glob_inputs(trained_checkpoint, tiny_tree):
    pattern = str(tiny_tree / "*" / "dog_00[01].png")
    code, out, _ = run(str(tiny_tree / "cat"), pattern, "--checkpoint", str(trained_checkpoint))
    paths = [line.split("  Object: ")[0] for line in out.splitlines()]
    assert code == 0 and len(paths) == 16 + 2 and all("/cat/" in p for p in paths[:16])
    assert paths[16:] == [str(tiny_tree / "dog/dog_000.png"), str(tiny_tree / "dog/dog_001.png")]


def test_bad_inputs_are_reported_and_good_ones_still_predicted(trained_checkpoint, tree_pngs, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("not an image")
    (tmp_path / "empty").mkdir()
    args = [str(tree_pngs[0]), "missing.jpg", str(notes), str(tmp_path / "empty")]
    code, out, err = run(*args, "--checkpoint", str(trained_checkpoint))
    assert code == 1 and out.count("Object: ") == 1
    assert err.splitlines() == [
        "predict.py: error: no such file: missing.jpg",
        f"predict.py: error: {tmp_path / 'empty'}: no images in this folder (looked for "
        ".bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp)",
        f"predict.py: error: {notes}: cannot read image (content is not JPEG, PNG, WEBP, GIF, BMP or TIFF); "
        "fix or remove the file",
    ]
    code, out, _ = run(*args, "--checkpoint", str(trained_checkpoint), "--json")
    errors = [r for r in map(json.loads, out.splitlines()) if "error" in r]
    assert code == 1 and [r["path"] for r in errors] == ["missing.jpg", str(tmp_path / "empty"), str(notes)]


def test_checkpoint_errors_exit_2_with_one_line(tree_pngs, tmp_path):
    code, _, err = run(str(tree_pngs[0]), "--checkpoint", str(tmp_path / "nope.ckpt"))
    assert code == 2
    missing = tmp_path / "nope.ckpt"
    assert err == f"predict.py: error: checkpoint not found: {missing} (train one with `{command('train')}`)\n"
    other = tmp_path / "other.ckpt"
    torch.save({"weights": torch.zeros(2)}, other)
    code, _, err = run(str(tree_pngs[0]), "--checkpoint", str(other))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"predict.py: error: {other}: not a detective checkpoint")
    for name, content in [("notes.txt", b"a text file\n"), ("cut.ckpt", other.read_bytes()[:300])]:
        wrong = tmp_path / name
        wrong.write_bytes(content)
        code, _, err = run(str(tree_pngs[0]), "--checkpoint", str(wrong))
        assert code == 2 and err == (
            f"predict.py: error: {wrong}: not a checkpoint written by train.py, or damaged; "
            "give a run's checkpoints/best.ckpt, or a model.onnx from --export\n"
        )


def test_default_checkpoint_is_the_newest_under_the_output_folder(trained_checkpoint, tree_pngs, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTIVE_OUTPUT", str(tmp_path / "out"))
    code, out, err = run(str(tree_pngs[0]))
    assert code == 2 and out == ""
    assert (
        "no --checkpoint given and no trained checkpoint under" in err and f"train one with `{command('train')}`" in err
    )
    best = tmp_path / "out/runs/2025-01-01_00-00-00_x/checkpoints/best.ckpt"
    best.parent.mkdir(parents=True)
    shutil.copy(trained_checkpoint, best)
    code, out, err = run(str(tree_pngs[0]))
    assert code == 0 and err == f"predict.py: using the newest checkpoint, {best}\n" and "Object: " in out
    monkeypatch.setenv("LOCAL_RANK", "1")  # another process of a --devices N run says nothing of it
    code, out, err = run(str(tree_pngs[0]))
    assert code == 0 and err == "" and "Object: " in out


def test_usage_errors_exit_2(tree_pngs, capsys):
    for argv in ([], [str(tree_pngs[0]), "--threshold", "2"], [str(tree_pngs[0]), "--device", "tpu"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "usage: predict.py" in capsys.readouterr().err


def test_many_process_options_need_out_and_plain_prediction(tree_pngs, tmp_path, capsys):
    out = str(tmp_path / "preds")
    cases = {
        ("--devices", "2"): "--devices needs --out DIR",
        ("--shard-size", "9"): "--shard-size needs --out DIR",
        ("--out", out, "--device", "cpu"): "--out takes --accelerator and --devices, not --device",
        ("--out", out, "--explain", out): "--out goes with plain prediction, not --evaluate, --explain or --export",
        ("--out", out, "--checkpoint", "model.onnx"): "--out predicts with a .ckpt through Lightning",
    }
    for argv, message in cases.items():
        with pytest.raises(SystemExit) as exit_info:
            main([str(tree_pngs[0]), *argv])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "preds").exists()


@pytest.mark.slow
def test_predict_py_end_to_end_as_a_fresh_process(trained_checkpoint, tree_pngs):
    cmd = [sys.executable, "predict.py", str(tree_pngs[0]), "missing.jpg", "--checkpoint", str(trained_checkpoint)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"{tree_pngs[0]}  Object: ") and proc.stdout.count("\n") == 1
    assert proc.stderr == "predict.py: error: no such file: missing.jpg\n"  # no progress bar when not a terminal


@pytest.mark.slow
def test_a_reader_that_leaves_early_is_not_an_error(trained_checkpoint, tree_pngs):
    """`predict.py photos/ | head -1`: the pipe closes before the predictions are written."""
    cmd = [sys.executable, "predict.py", *map(str, tree_pngs), "--checkpoint", str(trained_checkpoint)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "Error" not in err, err


@pytest.mark.slow
def test_prediction_path_imports_no_lightning_hydra_or_torchvision(trained_checkpoint, tree_pngs):
    script = (
        "import sys\n"
        "from detective.predict.cli import build_parser, main\n"
        "assert 'torch' not in sys.modules, 'parsing must not import torch'\n"
        f"code = main([{str(tree_pngs[0])!r}, '--checkpoint', {str(trained_checkpoint)!r}, '--json'])\n"
        "heavy = ('lightning', 'hydra', 'omegaconf', 'torchvision')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print('CODE', code, 'BAD', bad)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "CODE 0 BAD []"
