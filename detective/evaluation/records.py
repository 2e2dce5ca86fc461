"""What an evaluation holds, apart from the figures' code: the per-image records and the finished report. Light to
import (no torch, no torchmetrics), so that `predict.py --evaluate` can collect records while the metrics' library
is still being imported."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Record:
    """One evaluated image: the truth from its path, the predictor's answers, and the facts slices group by."""

    path: Path
    subject: str
    is_ai: bool
    ai_probability: float
    predicted_subject: str = ""
    subject_confidence: float = 0.0
    uncertain: bool = False
    unfamiliar: bool | None = None
    format: str = ""
    size: tuple[int, int] = (0, 0)
    jpeg_quality: int | None = None


@dataclass
class Evaluation:
    """A finished evaluation: the report (plain values, what `--json` prints) and the records behind it."""

    report: dict[str, Any]
    records: list[Record] = field(default_factory=list)
