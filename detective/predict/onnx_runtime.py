"""Predicting from an exported `.onnx` file with onnxruntime: no torch, torchvision or Lightning in the process.

The file holds the whole net (normalisation, trunk, both heads: `onnx_export`) and, as JSON in its metadata, the
settings the checkpoint had, so it is all `predict.py` needs. Images become the views the checkpoint's settings
call for (the downscaled image, native crops, or both) through `transforms_np`, the numpy twins of the eval views,
which give the very pixels the PyTorch path gives. The model scores each crop; each image's AI probability is the
sigmoid of the mean of its crops' source logits, settled early as `Predictor` settles it (`settling`), so the
predictions equal the PyTorch path's to float rounding. onnxruntime is imported only when a model is
opened, so a missing install is one clear error naming the extra that brings it.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from detective.constants import CPU_CROP_CHUNK, GPU_CROP_CHUNK, GPU_PREDICT_BATCH
from detective.data.geometry import ViewSettings
from detective.data.images import load_rgb_array
from detective.data.transforms_np import ArrayViews, eval_views
from detective.predict.batching import BatchPredictor, ImageInput, Scores
from detective.predict.discover import CheckpointError
from detective.predict.settling import EVERY_CROP, Settling

EXTRA = "pip install 'detective[onnx]'"
METADATA_KEY = "detective"  # the settings' JSON in the model's metadata_props
FORMAT_VERSION = 2  # of that JSON and of the model's inputs and outputs (1: one downscaled view, probabilities)
IMAGES = "images"  # input, uint8 [batch, 3, S, S], RGB: the downscaled view
CROPS = "crops"  # input, uint8 [crops, 3, C, C], RGB: the native crops of all the batch's images, image by image
SUBJECT = "subject_probabilities"  # output, float32 [batch, subjects] (softmax)
SOURCE = "source_logits"  # output, float32 [crops] (native) or [batch] (resized); above 0 means AI
NOVELTY = "crop_novelty"  # output, float32 [crops], where the checkpoint has a novelty limit (`DetectiveNet.judged`)
VIEW_SETTINGS = tuple(f.name for f in fields(ViewSettings))
SETTINGS = ("subjects", "threshold", *VIEW_SETTINGS)  # what prediction reads from the metadata


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, purpose: str) -> ModuleType:
    """Import `module`, or say in one line which extra to install for `purpose`."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f"{purpose} needs {module}, which is not installed: {EXTRA}") from None


def input_names(views: ViewSettings) -> list[str]:
    """The model's inputs: the downscaled images where a head reads them, the native crops where the source does."""
    return [IMAGES] * views.takes_image + [CROPS] * views.native


def output_names(views: ViewSettings, novelty: bool = False) -> list[str]:
    """The model's outputs: the subject probabilities where there is a subject head, the source logits, and each
    crop's novelty where the model tells unfamiliar images."""
    return [SUBJECT] * views.subject_head + [SOURCE] + [NOVELTY] * novelty


def collate(batch: Sequence[ArrayViews]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-image numpy views -> the model's inputs (NCHW) and `owner`, the image each source logit belongs to
    (`dataset.collate_views`' order: the crops image by image; without crops, one logit per image)."""
    images, crops = zip(*batch, strict=True)
    feeds = {}
    if images[0] is not None:
        feeds[IMAGES] = np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))
    if crops[0] is None:
        return feeds, np.arange(len(batch))
    feeds[CROPS] = np.ascontiguousarray(np.concatenate(crops).transpose(0, 3, 1, 2))
    return feeds, np.repeat(np.arange(len(batch)), [len(c) for c in crops])


def ai_probabilities(image_logits: np.ndarray) -> np.ndarray:
    """The sigmoid of each image's source logit, in float32, as the predictor computes it."""
    with np.errstate(over="ignore"):  # a logit below -88 overflows exp in float32: its probability is then 0
        return 1 / (1 + np.exp(-image_logits))


def on_gpu(session: Any) -> bool:
    """Whether the session runs on a CUDA GPU first (it takes larger batches and crop chunks there)."""
    return session.get_providers()[0] == "CUDAExecutionProvider"


def infer(
    session: Any,
    views: ViewSettings,
    feeds: Mapping[str, np.ndarray],
    owner: np.ndarray,
    novelty: bool = False,
    settling: Settling = EVERY_CROP,
    threshold: float = 0.5,
    temperature: float = 1.0,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Run the model on collated inputs: (subject probabilities [B, S] or None, AI probabilities [B], novelty [B]
    or None). Each image's answer follows `settling` (off by default: the mean of all its crops), as `Predictor`
    gives it, judging the crops a settled image skips only where another image of the batch needs them; its AI
    probability is sigmoid(logit / `temperature`)."""
    names = output_names(views, novelty)
    chunk = GPU_CROP_CHUNK if on_gpu(session) else CPU_CROP_CHUNK
    subject: list[np.ndarray] = []

    def run(crops: np.ndarray | None) -> list[np.ndarray]:
        """One call; the downscaled views go through the model in the first one only."""
        run_feeds = dict(feeds) if crops is None else {**feeds, CROPS: crops}
        if subject and IMAGES in feeds:
            run_feeds[IMAGES] = feeds[IMAGES][:0]
        outputs = session.run(names, run_feeds)
        subject.extend(outputs[:1] if views.subject_head and not subject else [])
        return outputs[views.subject_head :]

    def judge(chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        # Without crops every image is its own first "crop": one call. Crops go a chunk at a time, as in `DetectiveNet`:
        # faster on a CPU, and memory bounded by the chunk rather than by the batch.
        if CROPS not in feeds:
            outputs = [run(None)]
        else:
            crops = feeds[CROPS][chosen]
            outputs = [run(crops[start : start + chunk]) for start in range(0, len(crops), chunk)]
        logits = np.concatenate([o[0] for o in outputs])
        return logits, np.concatenate([o[1] for o in outputs]) if novelty else None

    logits, image_novelty = settling.judged(judge, owner, threshold, temperature)
    return subject[0] if subject else None, ai_probabilities(logits / temperature), image_novelty


class OnnxPredictor(BatchPredictor):
    """An exported model in an onnxruntime session, with the settings saved in it; like `Predictor`, without torch."""

    def __init__(
        self, session: Any, settings: Mapping[str, Any], threshold: float | None = None, uncertain: float = 0.0
    ) -> None:
        chosen = settings["threshold"] if threshold is None else threshold
        # Models exported before the temperature was calibrated gave the net's own probabilities.
        temperature = settings.get("temperature", 1.0)
        super().__init__(settings["subjects"], float(chosen), uncertain, settings.get("novelty_limit"), temperature)
        self.session = session
        if on_gpu(session):
            self.batch_size = GPU_PREDICT_BATCH
        self.view_settings = ViewSettings(**{k: settings[k] for k in VIEW_SETTINGS})
        self.settling = Settling.from_hparams(settings)
        self.views = eval_views(self.view_settings)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        device: str = "auto",
        threshold: float | None = None,
        uncertain: float = 0.0,
        threads: int | None = None,
    ) -> OnnxPredictor:
        """Open a model written by `predict.py --export`; `threshold` overrides the saved one, `uncertain` is
        `Predictor`'s band, `threads` sets onnxruntime's CPU threads (default: its own choice)."""
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
        return cls(session, read_settings(session.get_modelmeta().custom_metadata_map, path), threshold, uncertain)

    def load(self, image: ImageInput) -> ArrayViews:
        """Decode one input and make the views `Predictor.load` makes, as uint8 (H, W, 3) arrays: (downscaled image,
        native crops (K, C, C, 3)), either may be None."""
        return self.views(load_rgb_array(image, self.view_settings.decode_side))

    def score(self, loaded: Sequence[ArrayViews], top_k: int) -> list[Scores]:
        novelty = self.novelty_limit is not None
        feeds, owner = collate(loaded)
        subject, ai, image_novelty = infer(
            self.session, self.view_settings, feeds, owner, novelty, self.settling, self.threshold, self.temperature
        )
        return self.ranked(subject, ai.tolist(), top_k, None if image_novelty is None else image_novelty.tolist())


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
