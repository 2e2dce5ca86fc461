"""Predicting from an exported `.onnx` file with onnxruntime: no torch, torchvision or Lightning in the process.

The file holds the whole net (normalisation, trunk, both heads, softmax and sigmoid: `onnx_export`) and, as JSON
in its metadata, the settings the checkpoint had, so it is all `predict.py` needs. Images are prepared by
`transforms_np`, the numpy twin of the eval transform, which gives the very pixels the PyTorch path gives; the
predictions then equal the PyTorch path's to float rounding. onnxruntime is imported only when a model is opened,
so a missing install is one clear error naming the extra that brings it.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from detective.data.images import load_rgb_array
from detective.data.transforms_np import eval_transform
from detective.predict.batching import BatchPredictor, ImageInput, Scores
from detective.predict.discover import CheckpointError

EXTRA = "pip install 'detective[onnx]'"
METADATA_KEY = "detective"  # the settings' JSON in the model's metadata_props
FORMAT_VERSION = 1  # of that JSON and of the model's inputs and outputs
INPUT = "images"  # uint8 [batch, 3, S, S], RGB
OUTPUTS = ("subject_probabilities", "ai_probability")  # float32 [batch, subjects] and [batch]
SETTINGS = ("subjects", "image_size", "crop_fraction", "threshold")  # what prediction reads from the metadata


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, purpose: str) -> ModuleType:
    """Import `module`, or say in one line which extra to install for `purpose`."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f"{purpose} needs {module}, which is not installed: {EXTRA}") from None


class OnnxPredictor(BatchPredictor):
    """An exported model in an onnxruntime session, with the settings saved in it; like `Predictor`, without torch."""

    def __init__(self, session: Any, settings: Mapping[str, Any], threshold: float | None = None) -> None:
        image_size, crop_fraction = int(settings["image_size"]), float(settings["crop_fraction"])
        chosen = settings["threshold"] if threshold is None else threshold
        super().__init__(settings["subjects"], image_size, crop_fraction, float(chosen))
        self.session = session
        self.transform = eval_transform(image_size, crop_fraction)

    @classmethod
    def from_file(
        cls, path: str | Path, device: str = "auto", threshold: float | None = None, threads: int | None = None
    ) -> OnnxPredictor:
        """Open a model written by `predict.py --export`; `threshold` overrides the saved one, `threads` sets
        onnxruntime's CPU threads (default: its own choice)."""
        path = Path(path).expanduser()
        ort = require("onnxruntime", f"predicting with {path.name}")
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path} (write one with {_export_hint(path)})")
        providers = _providers(ort, device)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are about graph optimisations, not the user's input
        if threads:
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...) for a bad file
            reason = " ".join(str(err).split())[:160] or type(err).__name__
            raise CheckpointError(f"{path}: not a readable ONNX model ({reason})") from None
        return cls(session, read_settings(session.get_modelmeta().custom_metadata_map, path), threshold)

    def load(self, image: ImageInput) -> np.ndarray:
        """Decode and transform one input into the uint8 (S, S, 3) array `transforms.eval_transform` would give."""
        return self.transform(load_rgb_array(image, self.min_side))

    def score(self, loaded: Sequence[np.ndarray], top_k: int) -> list[Scores]:
        return self.predict_arrays(np.stack(loaded).transpose(0, 3, 1, 2), top_k)

    def predict_arrays(self, batch: np.ndarray, top_k: int = 3) -> list[Scores]:
        """A uint8 (B, 3, S, S) batch -> per image: subjects by probability (top k) and the AI probability."""
        probs, ai = self.session.run(list(OUTPUTS), {INPUT: np.ascontiguousarray(batch)})
        k = max(1, min(top_k, len(self.subjects)))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [
            ([(self.subjects[i], float(row[i])) for i in ix], float(p))
            for row, ix, p in zip(probs, order, ai, strict=True)
        ]


def read_settings(metadata: Mapping[str, str], path: Path) -> dict[str, Any]:
    """The checkpoint's settings from a model's metadata, or a one-line error for a model that is not ours."""
    try:
        settings = json.loads(metadata[METADATA_KEY])
    except (KeyError, ValueError):
        raise CheckpointError(
            f"{path}: not a detective model (no settings in its metadata); write one with {_export_hint(path)}"
        ) from None
    found = settings.get("format") if isinstance(settings, dict) else None
    if found != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: model format {found!r}, this detective reads format {FORMAT_VERSION}; "
            f"export it again with {_export_hint(path)}"
        )
    missing = [k for k in SETTINGS if k not in settings]
    if missing:
        raise CheckpointError(
            f"{path}: its settings lack {', '.join(missing)}; export it again with {_export_hint(path)}"
        )
    return settings


def _providers(ort: ModuleType, device: str) -> list[str]:
    """onnxruntime's execution providers for `--device`: `auto` takes CUDA where this onnxruntime has it."""
    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not cuda:
        raise ValueError("--device cuda: this onnxruntime has no CUDA support (onnxruntime-gpu); use --device cpu")
    if device == "mps":
        raise ValueError("--device mps: not available for an ONNX model; use --device cpu or auto")
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}: use auto, cpu or cuda")
    return (["CUDAExecutionProvider"] if cuda and device != "cpu" else []) + ["CPUExecutionProvider"]


def _export_hint(path: Path) -> str:
    return f"`python predict.py --export {path.name} --checkpoint best.ckpt`"
