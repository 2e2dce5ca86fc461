"""What prediction gives back, one per input: a `Prediction`, or a `Failure` with its one-line reason.

Plain data with no torch, shared by the PyTorch and the ONNX predictors, so both print and serialise alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Prediction:
    """Both answers for one image; `source` reads "AI generated" or "real photo"."""

    path: str | None
    subject: str
    subject_confidence: float
    top_k: list[tuple[str, float]]
    ai_probability: float
    is_ai: bool
    threshold: float

    @property
    def source(self) -> str:
        return "AI generated" if self.is_ai else "real photo"

    def describe(self) -> str:
        """The original's two lines on one: `Object: cat (98.5%)  Source: AI generated (AI probability 0.93)`."""
        return (
            f"Object: {self.subject} ({self.subject_confidence:.1%})  "
            f"Source: {self.source} (AI probability {self.ai_probability:.2f})"
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON Lines record of `predict.py --json`."""
        return {
            "path": self.path,
            "subject": self.subject,
            "subject_confidence": self.subject_confidence,
            "top_k": [{"subject": s, "probability": p} for s, p in self.top_k],
            "ai_probability": self.ai_probability,
            "is_ai": self.is_ai,
            "source": self.source,
            "threshold": self.threshold,
        }


@dataclass(frozen=True)
class Failure:
    """An input that could not be predicted, with the one-line reason."""

    path: str | None
    error: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "error": self.error}


Result = Prediction | Failure
