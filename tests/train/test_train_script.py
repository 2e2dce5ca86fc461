"""train.py as users run it: Hydra multirun through a subprocess, and 2-process CPU DDP."""

import csv
import subprocess
import sys

import pytest
import yaml

from detective.predict.checkpoint import read_checkpoint
from detective.train.config import compose_config
from detective.train.run import train
from tests.helpers import REPO, train_overrides


@pytest.mark.slow
def test_multirun_sweep_writes_one_folder_per_job(tiny_tree, tmp_path):
    sweep = tmp_path / "sweep"
    overrides = [o for o in train_overrides(tiny_tree, tmp_path) if not o.startswith("paths.output_dir")]
    cmd = [sys.executable, "train.py", "-m", "model.source_weight=1.0,2.0", *overrides, f"hydra.sweep.dir={sweep}"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [j.name for j in jobs] == ["0", "1"]
    weights = []
    for job in jobs:
        config = yaml.safe_load((job / "config.yaml").read_text())  # the resolved config
        assert config["paths"]["output_dir"] == str(job)  # each job writes into its own folder
        weights.append(config["model"]["source_weight"])
        info = read_checkpoint(job / "checkpoints" / "best.ckpt")
        assert info.hparams["source_weight"] == weights[-1]
    assert weights == [1.0, 2.0]
    assert done.stdout.count("Best checkpoint:") == 2
    with open(sweep / "summary.csv", newline="") as f:  # the sweep's result at a glance, best first
        summary = list(csv.DictReader(f))
    assert sorted(r["overrides"] for r in summary) == ["model.source_weight=1.0", "model.source_weight=2.0"]
    assert "Sweep summary (best first):" in done.stdout


@pytest.mark.slow
def test_two_process_cpu_ddp(tiny_tree, tmp_path):
    score = train(compose_config(train_overrides(tiny_tree, tmp_path, "trainer=ddp_cpu")))
    assert score is not None
    info = read_checkpoint(tmp_path / "checkpoints" / "best.ckpt")
    assert info.subjects == ["cat", "dog", "owl"]
