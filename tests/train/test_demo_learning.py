"""The demo recipe (`python train.py` with no arguments) learns both heads on its held-out test split."""

import csv

import pytest

from detective.train.config import compose_config
from detective.train.run import train

CHANCE_SUBJECT = 0.25  # four shapes
CHANCE_SOURCE = 0.5


def last_test_metrics(metrics_csv):
    rows = [r for r in csv.DictReader(metrics_csv.open()) if r.get("test/subject_acc")]
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("test/") and v}


@pytest.mark.slow
def test_demo_recipe_learns_subject_and_source(tmp_path, capsys, caplog):
    train(compose_config([f"paths.output_dir={tmp_path}", "~callbacks.progress_bar"]))
    metrics = last_test_metrics(tmp_path / "logs" / "metrics.csv")
    with capsys.disabled():
        print(f"\ndemo recipe, test split: { {k: round(v, 3) for k, v in sorted(metrics.items())} }")
    assert metrics["test/subject_acc"] >= CHANCE_SUBJECT + 0.12
    assert metrics["test/source_acc"] >= CHANCE_SOURCE + 0.2
    assert metrics["test/source_auroc"] >= 0.8
    assert "Object:" in caplog.text  # the run ends with a held-out prediction
