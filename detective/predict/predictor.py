"""`Predictor`: a trained checkpoint -> typed predictions for paths, PIL images or bytes.

The image goes through `eval_transform`, the very function validation and testing use, with
the image size and crop saved in the checkpoint, so training and prediction cannot disagree.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch
from PIL import Image

from detective.data.images import ImageDecodeError, load_rgb
from detective.data.transforms import eval_transform, resize_size
from detective.predict.checkpoint import read_checkpoint

ImageInput = str | os.PathLike | bytes | BinaryIO | Image.Image


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


@dataclass(frozen=True)
class Failure:
    """An input that could not be predicted, with the one-line reason."""

    path: str | None
    error: str


def pick_device(name: str = "auto") -> torch.device:
    """`auto` takes CUDA, then Apple's MPS, then the CPU; a named device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is visible here; use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("--device mps: Apple's MPS is not available here; use --device cpu or auto")
    if name not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
    return torch.device(name)


class Predictor:
    """Holds a trained net and the settings saved with it; `predict` takes any mix of image inputs."""

    def __init__(
        self,
        net: torch.nn.Module,
        subjects: Sequence[str],
        image_size: int,
        crop_fraction: float,
        threshold: float,
        device: str = "auto",
    ) -> None:
        self.device = pick_device(device)
        self.net = net.to(self.device).eval()
        self.subjects = list(subjects)
        self.threshold = float(threshold)
        self.transform = eval_transform(image_size, crop_fraction)
        self.min_side = resize_size(image_size, crop_fraction)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", threshold: float | None = None) -> Predictor:
        """Everything comes from the checkpoint; `threshold` overrides the calibrated one."""
        info = read_checkpoint(path)
        hp = info.hparams
        return cls(
            info.build_net(),
            info.subjects,
            int(hp["image_size"]),
            float(hp["crop_fraction"]),
            float(hp["threshold"] if threshold is None else threshold),
            device,
        )

    def load(self, image: ImageInput) -> torch.Tensor:
        """Decode and transform one input into the uint8 (3, S, S) tensor the net takes."""
        return self.transform(load_rgb(image, self.min_side))

    @torch.inference_mode()
    def predict_tensors(self, batch: torch.Tensor, top_k: int = 3) -> list[tuple[list[tuple[str, float]], float]]:
        """A uint8 batch -> per image: subjects by probability (top k) and the AI probability."""
        subject_logits, source_logits = self.net(batch.to(self.device))
        probs = torch.softmax(subject_logits.float(), dim=1).cpu()
        ai = torch.sigmoid(source_logits.float()).cpu()
        k = max(1, min(top_k, len(self.subjects)))
        values, indices = probs.topk(k, dim=1)
        return [
            ([(self.subjects[i], float(v)) for v, i in zip(vs, ix, strict=True)], float(p))
            for vs, ix, p in zip(values.tolist(), indices.tolist(), ai.tolist(), strict=True)
        ]

    def result(self, path: str | None, ranked: list[tuple[str, float]], ai_probability: float) -> Prediction:
        subject, confidence = ranked[0]
        return Prediction(
            path, subject, confidence, ranked, ai_probability, ai_probability >= self.threshold, self.threshold
        )

    def predict(self, images: Iterable[ImageInput], batch_size: int = 32, top_k: int = 3) -> list[Prediction | Failure]:
        """Predict each input in order; an input that cannot be read becomes a `Failure`, not an exception."""
        inputs = list(images)
        out: list[Prediction | Failure | None] = [None] * len(inputs)
        for start in range(0, len(inputs), batch_size):
            chunk = range(start, min(start + batch_size, len(inputs)))
            loaded = []
            for i in chunk:
                try:
                    loaded.append((i, self.load(inputs[i])))
                except ImageDecodeError as err:
                    out[i] = Failure(_name(inputs[i]), str(err))
            if loaded:
                batch = torch.stack([t for _, t in loaded])
                for (i, _), (ranked, p) in zip(loaded, self.predict_tensors(batch, top_k), strict=True):
                    out[i] = self.result(_name(inputs[i]), ranked, p)
        return out  # type: ignore[return-value]


def _name(image: ImageInput) -> str | None:
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
