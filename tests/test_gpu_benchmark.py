"""benchmarks/gpu.py in its tiny CPU form: the GPU benchmark is run rarely, so CI keeps it from rotting."""

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO, write_tree

PER_SOURCE = 9  # 3 folds: 3 real and 3 AI images in the test fold


@pytest.mark.slow
def test_tiny_cpu_form_trains_a_fold_predicts_both_ways_and_reports(tmp_path):
    names = [f"{source}/{source}_{i:02d}.jpg" for source in ("real", "ai") for i in range(PER_SOURCE)]
    data = write_tree(tmp_path / "data", names, (64, 48))
    out = tmp_path / "gpu.json"
    cmd = [sys.executable, "benchmarks/gpu.py", "--cpu", "--scratch", "--data", str(data)]
    cmd += ["--workdir", str(tmp_path / "work"), "--out", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    report = json.loads(out.read_text())
    assert report["mode"].startswith("cpu")
    assert "trainer=cpu" in report["train"]["overrides"]
    assert "model.pretrained=false" in report["train"]["overrides"]
    assert report["train"]["seconds"] > 0
    assert report["test_fold"]["images"] == 2 * PER_SOURCE // 3
    assert 0 <= report["test_fold"]["accuracy"] <= 1
    assert 0 <= report["test_fold"]["auroc"] <= 1  # both sources in the test fold: defined
    # The prediction records agree with the test figures train.py logged on the same fold.
    assert report["test_fold"]["accuracy"] == pytest.approx(report["train"]["test_accuracy"], abs=1e-6)
    assert report["test_fold"]["auroc"] == pytest.approx(report["train"]["test_auroc"], abs=1e-6)
    for path in ("predict", "predict_out"):
        run = report[path]
        assert run["images"] == 2 * PER_SOURCE, path
        assert run["photos_per_second"] == pytest.approx(run["images"] / run["seconds"])
        assert run["peak_mb"] > 50, path  # a Python process with torch: tens of MB at the very least
    assert "--out" in report["predict_out"]["command"]
    assert "--json" in report["predict"]["command"]

    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert table[0] == "| step | figure | detail |"
    assert [row.split(" | ")[0] for row in table[2:]] == [
        "| train fold 0",
        "| test fold (6 images): accuracy / AUROC",
        "| `predict.py DIR --json`",
        "| `predict.py DIR --out DIR --devices 1`",
    ]
    assert "photos/s" in table[-1]
