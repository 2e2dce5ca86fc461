"""A sweep's result at a glance: after `train.py -m ...`, one row per job, best first, as a table and a CSV.

A Hydra callback (`hydra.callbacks.sweep_summary` in `conf/hydra/default.yaml`) that reads what every job left in
its own folder (its overrides, its metrics file), so it works whichever launcher ran the jobs, also when some
failed. Columns: the job's overrides (those the jobs differ in), its score (`optimized_metric` of the checkpoint
kept: the best epoch's, or the last epoch's with `callbacks=final`) and the main test metrics of that checkpoint;
a plot of the score against each swept numeric parameter is written beside it.
"""

from __future__ import annotations

import csv
import logging
import math
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from detective.files import atomic_write

log = logging.getLogger(__name__)

TEST_COLUMNS = ("test/source_acc", "test/source_auroc", "test/subject_acc")
CSV_NAME = "summary.csv"


def job_row(job: Path, monitor: str, mode: str, last: bool = False) -> dict[str, Any] | None:
    """One job's overrides, monitored score (the best epoch's, or with `last` the last epoch's: the checkpoint
    kept) and test metrics; None for a folder that is not a finished job."""
    overrides_file, metrics_file = job / ".hydra" / "overrides.yaml", job / "logs" / "metrics.csv"
    if not overrides_file.is_file() or not metrics_file.is_file():
        return None
    overrides = yaml.safe_load(overrides_file.read_text()) or []
    with open(metrics_file, newline="") as f:
        rows = list(csv.DictReader(f))
    scores = [float(r[monitor]) for r in rows if r.get(monitor)]
    tests = [r for r in rows if any(r.get(c) for c in TEST_COLUMNS)]
    row: dict[str, Any] = {"job": job.name, "overrides": shlex.join(overrides)}  # quoted as a shell needs them
    kept = (lambda values: values[-1]) if last else (max if mode == "max" else min)
    row[monitor] = kept(scores) if scores else math.nan
    for column in TEST_COLUMNS:
        row[column] = float(tests[-1][column]) if tests and tests[-1].get(column) else math.nan
    return row


def summarise_sweep(sweep_dir: Path, monitor: str, mode: str, last: bool = False) -> list[dict[str, Any]]:
    """Every job's row under `sweep_dir`, best monitored score first (jobs without a score last)."""
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    rows = [r for r in (job_row(job, monitor, mode, last) for job in jobs) if r is not None]
    swept = _varying([shlex.split(r["overrides"]) for r in rows])
    for r in rows:  # what the jobs differ in; the overrides they share say nothing about the ranking
        r["overrides"] = shlex.join(o for o in shlex.split(r["overrides"]) if o.partition("=")[0] in swept)
    sign = -1 if mode == "max" else 1
    return sorted(rows, key=lambda r: (math.isnan(r[monitor]), sign * r[monitor] if not math.isnan(r[monitor]) else 0))


def _varying(overrides: Sequence[Sequence[str]]) -> set[str]:
    """Override keys whose values differ between jobs (all keys when there is one job)."""
    values: dict[str, set[str]] = {}
    for job in overrides:
        for override in job:
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    return {k for k, v in values.items() if len(v) > 1 or len(overrides) == 1}


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def format_table(rows: Sequence[dict[str, Any]], monitor: str) -> str:
    columns = [monitor, *TEST_COLUMNS]
    lines = ["Sweep summary (best first):", "  job  " + "".join(f"{c:>18}" for c in columns) + "  overrides"]
    for r in rows:
        lines.append(f"  {r['job']:<5}" + "".join(f"{r[c]:>18.4f}" for c in columns) + f"  {r['overrides']}")
    return "\n".join(lines)


def swept_numbers(rows: Sequence[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """`parameter -> [(value, score)]` for overrides whose values are numbers and differ between jobs."""
    found: dict[str, list[tuple[str, float]]] = {}
    for r in rows:
        for override in shlex.split(r["overrides"]):
            key, _, value = override.partition("=")
            found.setdefault(key, []).append((value, r["score"]))
    numeric = {}
    for key, pairs in found.items():
        try:
            points = [(float(v), s) for v, s in pairs]
        except ValueError:
            continue
        if len({v for v, _ in points}) > 1:
            numeric[key] = sorted(points)
    return numeric


class SweepSummary(Callback):
    """At the end of a multirun: the summary table on the console, `summary.csv` (and `summary.png`) in the sweep
    folder."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        monitor = str(config.optimized_metric)
        mode = str(config.callbacks.model_checkpoint.get("mode", "min"))
        last = config.callbacks.model_checkpoint.monitor is None  # callbacks=final keeps the last epoch
        rows = summarise_sweep(sweep_dir, monitor, mode, last) if sweep_dir.is_dir() else []
        if not rows:
            log.info("Sweep summary: no finished jobs under %s", sweep_dir)
            return
        log.info(format_table(rows, monitor))
        written = [write_csv(rows, sweep_dir / CSV_NAME)]
        numbers = swept_numbers([{**r, "score": r[monitor]} for r in rows])
        if numbers:
            from detective.evaluation import plots  # matplotlib: only now, after the last job

            written.append(plots.sweep_plot(numbers, monitor, sweep_dir / "summary.png"))
        log.info("Written: %s", ", ".join(str(p) for p in written))
