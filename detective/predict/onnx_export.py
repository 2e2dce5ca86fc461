"""`predict.py --export model.onnx`: a checkpoint's whole net as an ONNX model that is enough to predict.

Inside the model: normalisation (it takes uint8 RGB pixels), the trunk and both heads. Its inputs are the views the
checkpoint's settings call for (`onnx_runtime.input_names`): the downscaled `images` where a head reads them, the
native `crops` where the source head reads those. Its outputs are the subject probabilities (softmax, with a subject
head) and one source logit per crop, or per image with the `resized` view. An image's crops are averaged outside the
graph, in `onnx_runtime`, as `DetectiveNet.forward` averages them (so each image may have its own number of crops);
every batch axis is dynamic. Its metadata holds the checkpoint's settings as JSON (`onnx_runtime.METADATA_KEY`), so
`OnnxPredictor` needs the file alone. Before the file is written, onnxruntime runs it beside the PyTorch net on the
views of random images of several sizes, and the two predictions are compared image by image: a copy that answers
differently is refused, never saved. The file appears whole or not at all (written aside, then renamed).
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import Tensor, nn

from detective.data.dataset import collate_views
from detective.data.geometry import ViewSettings
from detective.data.views import eval_views
from detective.files import atomic_write
from detective.predict.batching import check_threshold
from detective.predict.checkpoint import read_checkpoint
from detective.predict.onnx_runtime import (
    CROPS,
    FORMAT_VERSION,
    IMAGES,
    METADATA_KEY,
    NOVELTY,
    SOURCE,
    SUBJECT,
    infer,
    input_names,
    output_names,
    require,
)

OPSET = 17
TOLERANCE = 1e-5  # on probabilities; float rounding between the two runtimes is about 1e-7
# The check's images as (width, height) in crops: a grid of several, a column of two narrower than the crop (padded),
# exactly one. Three images, another batch size than the export's example, so the batch axes must be dynamic.
CHECK_SIZES = ((2.1, 1.3), (0.6, 1.2), (1.0, 1.0))


class ExportError(ValueError):
    """The model could not be exported as it should be; the message names the file."""


class Graph(nn.Module):
    """The net as exported: its views (`input_names`) -> subject probabilities (with a subject head) and source
    logits, one per row of the source head's view (a crop, or a downscaled image)."""

    def __init__(self, net: nn.Module, views: ViewSettings, novelty: bool) -> None:
        """`novelty`: also each crop's novelty (native crops, a source head on taps)."""
        super().__init__()
        self.net = net
        self.inputs = input_names(views)
        self.novelty = novelty

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        named = dict(zip(self.inputs, inputs, strict=True))
        novelty = None
        if CROPS in named:
            subject = self.net.subject_logits(named[IMAGES]) if IMAGES in named else None
            source, novelty = self.net.judged(named[CROPS])
        else:
            subject, source = self.net.both_heads(named[IMAGES])
        extra = [novelty] if self.novelty else []
        return (*([torch.softmax(subject, dim=1)] if subject is not None else []), source, *extra)


@dataclass(frozen=True)
class Exported:
    """What was written, for the confirmation line."""

    path: Path
    subjects: int
    views: ViewSettings
    max_difference: float  # largest probability difference, onnxruntime against torch, in the check

    def describe(self) -> str:
        v = self.views
        source = f"native {v.source_crop} px crops (up to {v.source_crops})" if v.native else "the downscaled image"
        subjects = f"{self.subjects} subjects at {v.image_size} px" if v.subject_head else "no subject head"
        return f"{subjects}, source head on {source}"


def export_onnx(checkpoint: str | Path, destination: str | Path, threshold: float | None = None) -> Exported:
    """Export `checkpoint`'s net with its settings to `destination` (an `.onnx` file), checked before it is saved;
    `threshold` replaces the calibrated AI threshold saved with it."""
    destination = Path(destination).expanduser()
    onnx = require("onnx", f"writing {destination.name}")
    ort = require("onnxruntime", f"checking {destination.name}")
    info = read_checkpoint(checkpoint)
    hp = info.hparams if threshold is None else {**info.hparams, "threshold": check_threshold(threshold)}
    views = ViewSettings.from_hparams(hp)
    net = info.build_net()
    # In eval mode: the exporter puts the wrapper back in the mode it found it in, and with it the net the check runs.
    novelty = views.native and hp.get("novelty_limit") is not None
    proto = onnx.load_from_string(_traced_onnx(Graph(net, views, novelty).eval(), views))
    settings = {
        "format": FORMAT_VERSION,
        **{k: _plain(hp[k]) for k in ("subjects", "threshold", "mean", "std")},
        "novelty_limit": hp.get("novelty_limit") if novelty else None,
        **{k: hp.get(k) for k in ("settle_crops", "settle_margin", "temperature")},
        **asdict(views),
        "backbone": hp.get("backbone", "mobilenet_v2"),
        "inputs": _describe_inputs(views),
        "outputs": _describe_outputs(views, novelty),
    }
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(settings)})
    proto.producer_name = "detective"
    data = proto.SerializeToString()
    difference = _max_difference(ort, net, views, data, novelty)
    if not difference <= TOLERANCE:
        raise ExportError(
            f"{destination}: the exported model disagrees with the checkpoint's net (probabilities differ by up to "
            f"{difference:.2g}); nothing written"
        )
    _write_whole(destination, data)
    return Exported(destination, len(hp["subjects"]), views, difference)


def _describe_inputs(views: ViewSettings) -> str:
    described = {
        IMAGES: f"uint8 [batch, 3, {views.image_size}, {views.image_size}], RGB 0-255, resized and center-cropped",
        CROPS: f"uint8 [crops, 3, {views.source_crop}, {views.source_crop}], RGB 0-255, each image's grid of native "
        "crops, image after image",
    }
    return "; ".join(f"{name}: {described[name]}" for name in input_names(views))


def _describe_outputs(views: ViewSettings, novelty: bool) -> str:
    per = "[crops] (one per crop; an image's AI probability is the sigmoid of its crops' mean / temperature)"
    if not views.native:
        per = "[batch] (an image's AI probability is the sigmoid of its logit / temperature)"
    described = {SUBJECT: "float32 [batch, subjects] (softmax)", SOURCE: f"float32 {per}"}
    described[NOVELTY] = "float32 [crops] (each crop's novelty; an image's is its crops' mean)"
    return "; ".join(f"{name}: {described[name]}" for name in output_names(views, novelty))


def _traced_onnx(model: Graph, views: ViewSettings) -> bytes:
    """The ONNX bytes of `model`, with every batch axis dynamic."""
    shapes = {IMAGES: (2, 3, views.image_size, views.image_size), CROPS: (3, 3, views.source_crop, views.source_crop)}
    examples = tuple(torch.zeros(shapes[name], dtype=torch.uint8) for name in model.inputs)
    axes = {IMAGES: {0: "batch"}, CROPS: {0: "crops"}, SUBJECT: {0: "batch"}}
    axes[SOURCE] = axes[CROPS] if views.native else axes[IMAGES]
    axes[NOVELTY] = axes[CROPS]
    outputs = output_names(views, model.novelty)
    names = [*model.inputs, *outputs]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the net's input-shape check: constant in the graph
        warnings.simplefilter("ignore", DeprecationWarning)  # torch's note that this exporter is no longer its default
        # The TorchScript-based exporter: much faster than the torch.export-based one, the same outputs, and no
        # onnxscript to install.
        torch.onnx.export(
            model,
            examples,
            buffer,
            dynamo=False,
            input_names=list(model.inputs),
            output_names=outputs,
            dynamic_axes={name: axes[name] for name in names},
            opset_version=OPSET,
        )
    return buffer.getvalue()


def _max_difference(ort: ModuleType, net: nn.Module, views: ViewSettings, data: bytes, novelty: bool) -> float:
    """Largest difference between the probabilities of onnxruntime (with `onnx_runtime`'s averaging of crops) and
    of the PyTorch net's forward, on the eval views of random images of the `CHECK_SIZES`."""
    seeded = torch.Generator().manual_seed(0)
    crop = views.source_crop if views.native else views.image_size
    images = [  # (3, H, W) on (H, W, 3) memory, as `load_image` decodes them
        torch.randint(0, 256, (round(h * crop), round(w * crop), 3), dtype=torch.uint8, generator=seeded).permute(
            2, 0, 1
        )
        for w, h in CHECK_SIZES
    ]
    batch = collate_views(*zip(*map(eval_views(**asdict(views)), images), strict=True))
    with torch.inference_mode():
        subject_logits, source_logits = net(*batch)
    expected = [torch.sigmoid(source_logits).numpy()]
    if subject_logits is not None:
        expected.append(torch.softmax(subject_logits, dim=1).numpy())
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    tensors = dict(zip((IMAGES, CROPS), batch[:2], strict=True))
    feeds = {name: np.ascontiguousarray(tensors[name].numpy()) for name in input_names(views)}
    owner = batch[2].numpy() if views.native else np.arange(len(images))
    subject, ai, _ = infer(session, views, feeds, owner, novelty)
    got = [ai] + ([subject] if subject is not None else [])
    return max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))


def _write_whole(path: Path, data: bytes) -> None:
    """Write aside and rename, so an interrupted export never leaves a half-written model under the name."""
    try:
        with atomic_write(path) as f:
            f.write(data)
    except OSError as err:
        raise ExportError(f"{path}: cannot write the model ({err.strerror or err})") from None


def _plain(value: object) -> object:
    """JSON-ready: tuples (as hyperparameters hold mean and std) become lists."""
    return list(value) if isinstance(value, (tuple, list)) else value
