"""The sweep summary reads every job's folder and ranks the jobs by their monitored score."""

import csv
import math

from omegaconf import OmegaConf
from PIL import Image

from detective.train.config import compose_config
from detective.train.sweep import SweepSummary, summarise_sweep


def write_job(folder, overrides, scores, test_acc):
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (folder / "logs").mkdir()
    with open(folder / "logs" / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "val/score", "test/source_acc"])
        writer.writeheader()
        for epoch, score in enumerate(scores):
            writer.writerow({"epoch": epoch, "val/score": score, "test/source_acc": ""})
        writer.writerow({"epoch": len(scores), "val/score": "", "test/source_acc": test_acc})


def test_jobs_are_ranked_by_their_best_epoch_and_a_failed_job_is_left_out(tmp_path):
    write_job(tmp_path / "0", ["model.lr=0.001"], [0.6, 0.7, 0.65], 0.71)
    write_job(tmp_path / "1", ["model.lr=0.01"], [0.8, 0.9], 0.88)
    (tmp_path / "2").mkdir()  # a job that died before writing anything
    rows = summarise_sweep(tmp_path, "val/score", "max")
    assert [r["job"] for r in rows] == ["1", "0"]
    assert rows[0]["val/score"] == 0.9 and rows[0]["test/source_acc"] == 0.88
    assert math.isnan(rows[0]["test/subject_acc"])  # not logged by this run
    assert [r["job"] for r in summarise_sweep(tmp_path, "val/score", "min")] == ["0", "1"]


def test_when_the_last_epoch_is_kept_jobs_are_ranked_by_their_last_epoch(tmp_path):
    write_job(tmp_path / "0", ["model.lr=0.001"], [0.9, 0.5], 0.6)
    write_job(tmp_path / "1", ["model.lr=0.01"], [0.6, 0.7], 0.7)
    assert [r["job"] for r in summarise_sweep(tmp_path, "val/score", "max")] == ["0", "1"]
    kept = summarise_sweep(tmp_path, "val/score", "max", last=True)
    assert [(r["job"], r["val/score"]) for r in kept] == [("1", 0.7), ("0", 0.5)]


def test_the_callback_writes_the_csv_and_a_plot_of_score_against_the_swept_value(tmp_path):
    for i, lr in enumerate((0.001, 0.01, 0.1)):
        write_job(tmp_path / str(i), [f"model.lr={lr}", "seed=1"], [0.5 + i / 10], 0.5)
    composed = compose_config(["data.root=x"])  # as train.py's sweeps have it
    cfg = OmegaConf.create(
        {
            "hydra": {"sweep": {"dir": str(tmp_path)}},
            "callbacks": {"model_checkpoint": composed.callbacks.model_checkpoint},
            "optimized_metric": composed.optimized_metric,
        }
    )
    SweepSummary().on_multirun_end(cfg)
    with open(tmp_path / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["overrides"] for r in rows] == [f"model.lr={lr}" for lr in (0.1, 0.01, 0.001)]  # seed: the same
    with Image.open(tmp_path / "summary.png") as image:
        assert image.format == "PNG" and image.width >= 300


def test_an_override_holding_a_list_stays_one_override_quoted_as_a_shell_takes_it(tmp_path):
    write_job(tmp_path / "0", ["data.root=[/a, /b]", "seed=1"], [0.5], 0.5)
    write_job(tmp_path / "1", ["data.root=[/a, /c]", "seed=1"], [0.6], 0.5)
    rows = summarise_sweep(tmp_path, "val/score", "max")
    assert [r["overrides"] for r in rows] == ["'data.root=[/a, /c]'", "'data.root=[/a, /b]'"]
