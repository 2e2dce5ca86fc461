"""What the predictor gives for each input: a `Prediction`, or a `Failure` saying why the input could not be read.

Plain data, no torch: `predict.py` reports inputs it cannot find before it imports torch, and the PyTorch and the
ONNX predictors share it, so both print and serialise alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Prediction:
    """Both answers for one image; `source` reads "AI generated", "real photo", or "uncertain" when the AI
    probability lies inside the `--uncertain` band around the threshold (`is_ai` still says which side it is on).
    `unfamiliar`: the image is unlike those the model was trained on, so its source answer deserves little trust.
    `subject` is None when the checkpoint has no subject head (trained on source-only data)."""

    path: str | None
    subject: str | None
    subject_confidence: float | None
    top_k: list[tuple[str, float]]
    ai_probability: float
    is_ai: bool
    threshold: float
    uncertain: bool = False
    novelty: float | None = None  # how far its source statistics lie from the training images' (about 1: alike)
    unfamiliar: bool | None = None  # novelty over the checkpoint's limit; None where the model cannot tell
    explain: dict[str, str] | None = None  # with --explain: head ("subject", "source") -> the picture written

    @property
    def source(self) -> str:
        if self.uncertain:
            return "uncertain"
        return "AI generated" if self.is_ai else "real photo"

    def describe(self) -> str:
        """Both answers on one line: `Object: cat (98.5%)  Source: AI generated (AI probability 0.93)`."""
        unfamiliar = ", unfamiliar" if self.unfamiliar else ""
        source = f"Source: {self.source} (AI probability {self.ai_probability:.2f}{unfamiliar})"
        if self.subject is None:
            return f"Object: - (no subject head)  {source}"
        return f"Object: {self.subject} ({self.subject_confidence:.1%})  {source}"

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
            "uncertain": self.uncertain,
            "unfamiliar": self.unfamiliar,
            "novelty": self.novelty,
            **({"explain": self.explain} if self.explain is not None else {}),
        }


@dataclass(frozen=True)
class Failure:
    """An input that could not be predicted, with the one-line reason."""

    path: str | None
    error: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "error": self.error}


Result = Prediction | Failure
