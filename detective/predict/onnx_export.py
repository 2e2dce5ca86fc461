"""`predict.py --export model.onnx`: a checkpoint's whole net as an ONNX model that is enough to predict.

Inside the model: normalisation (it takes uint8 RGB pixels), the trunk, both heads, and softmax and sigmoid, so
its outputs are the probabilities `Predictor` reports; the batch size is dynamic. Its metadata holds the
checkpoint's settings as JSON (`onnx_runtime.METADATA_KEY`), so `OnnxPredictor` needs the file alone. Before the
file is written, onnxruntime runs it beside the PyTorch net on random images: a copy that answers differently is
refused, never saved. The file appears whole or not at all (written aside, then renamed).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import Tensor, nn

from detective.predict.batching import check_threshold
from detective.predict.checkpoint import read_checkpoint
from detective.predict.onnx_runtime import FORMAT_VERSION, INPUT, METADATA_KEY, OUTPUTS, require

OPSET = 17
TOLERANCE = 1e-5  # on probabilities; float rounding between the two runtimes is about 1e-7
CHECK_BATCH = 3  # images in the check, another batch size than the export's example: the batch axis must be dynamic


class ExportError(ValueError):
    """The model could not be exported as it should be; the message names the file."""


class Probabilities(nn.Module):
    """The net as exported: uint8 images -> (subject probabilities [B, S], AI probability [B])."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        subject_logits, source_logits = self.net(images)
        return torch.softmax(subject_logits, dim=1), torch.sigmoid(source_logits)


@dataclass(frozen=True)
class Exported:
    """What was written, for the confirmation line."""

    path: Path
    subjects: int
    image_size: int
    max_difference: float  # largest probability difference, onnxruntime against torch, in the check


def export_onnx(checkpoint: str | Path, destination: str | Path, threshold: float | None = None) -> Exported:
    """Export `checkpoint`'s net with its settings to `destination` (an `.onnx` file), checked before it is saved;
    `threshold` replaces the calibrated AI threshold saved with it."""
    destination = Path(destination).expanduser()
    onnx = require("onnx", f"writing {destination.name}")
    ort = require("onnxruntime", f"checking {destination.name}")
    info = read_checkpoint(checkpoint)
    hp = info.hparams if threshold is None else {**info.hparams, "threshold": check_threshold(threshold)}
    size = int(hp["image_size"])
    model = Probabilities(info.build_net()).eval()
    proto = onnx.load_from_string(_traced_onnx(model, size))
    settings = {
        "format": FORMAT_VERSION,
        **{k: _plain(hp[k]) for k in ("subjects", "image_size", "crop_fraction", "threshold", "mean", "std")},
        "backbone": hp.get("backbone", "mobilenet_v2"),
        "input": f"{INPUT}: uint8 [batch, 3, {size}, {size}], RGB 0-255, resized and center-cropped as in training",
        "outputs": f"{OUTPUTS[0]}: float32 [batch, subjects] (softmax); {OUTPUTS[1]}: float32 [batch] (sigmoid)",
    }
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(settings)})
    proto.producer_name = "detective"
    data = proto.SerializeToString()
    difference = _max_difference(ort, model, data, size)
    if not difference <= TOLERANCE:
        raise ExportError(
            f"{destination}: the exported model disagrees with the checkpoint's net (probabilities differ by up to "
            f"{difference:.2g}); nothing written"
        )
    _write_whole(destination, data)
    return Exported(destination, len(hp["subjects"]), size, difference)


def _traced_onnx(model: nn.Module, size: int) -> bytes:
    """The ONNX bytes of `model` for uint8 [batch, 3, size, size] input."""
    example = torch.zeros((2, 3, size, size), dtype=torch.uint8)
    buffer = io.BytesIO()
    batch = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the net's input-shape check: constant in the graph
        warnings.simplefilter("ignore", DeprecationWarning)  # torch's note that this exporter is no longer its default
        # The TorchScript-based exporter: 2 s against 17 s for the torch.export-based one, the same outputs, and no
        # onnxscript to install.
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            input_names=[INPUT],
            output_names=list(OUTPUTS),
            dynamic_axes={INPUT: batch, OUTPUTS[0]: batch, OUTPUTS[1]: batch},
            opset_version=OPSET,
        )
    return buffer.getvalue()


def _max_difference(ort: ModuleType, model: nn.Module, data: bytes, size: int) -> float:
    """Largest difference between onnxruntime's and torch's probabilities on `CHECK_BATCH` random images."""
    seeded = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (CHECK_BATCH, 3, size, size), dtype=torch.uint8, generator=seeded)
    with torch.inference_mode():
        expected = [t.numpy() for t in model(images)]
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUTS), {INPUT: images.numpy()})
    return max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))


def _write_whole(path: Path, data: bytes) -> None:
    """Write aside and rename, so an interrupted export never leaves a half-written model under the name."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{path}: cannot write the model ({err.strerror or err})") from None


def _plain(value: object) -> object:
    """JSON-ready: tuples (as hyperparameters hold mean and std) become lists."""
    return list(value) if isinstance(value, (tuple, list)) else value
