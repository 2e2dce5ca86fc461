"""Why it said so: a heatmap per head over the image (`predict.py --explain DIR`).

Grad-CAM: the activation maps of the backbone's last block, weighed by the mean gradient of one logit with respect to
each, summed and clipped at zero, show where the evidence for that logit lies. Each map shows the evidence *for the
answer given*: the predicted subject's logit; the AI logit for an "AI generated" answer, its negation (the evidence
against AI) for a "real photo" one.

- Subject head: it reads one downscaled, centre-cropped view; its map is stretched back over the region of the image
  that view covers, and what lies outside is dimmed (the head never saw it).
- Source head: with native crops (the default) the image's AI logit is the mean of its crops' logits, so the map is
  made crop by crop (each crop's own logit) and pasted back at each crop's place (overlaps averaged), and each crop's
  own AI probability is written on its box. Those numbers are what the decision averages, exactly, with nothing
  interpreted; Grad-CAM adds where inside a crop the evidence lies (coarsely: one cell per 32 px). Parts of a large
  image that no crop covers are dimmed. With `source_view=resized` the source head reads the subject's view, and its
  map is made like the subject's.

Only `--explain` imports this module, and matplotlib (for its colormap) with it: plain prediction pays for neither.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor, nn
from torch.nn import functional as F

from detective.data.images import ImageDecodeError
from detective.data.transforms import load_image, resize
from detective.data.views import Box
from detective.files import atomic_write
from detective.model.net import DetectiveNet
from detective.predict.predictor import Predictor
from detective.predict.results import Failure, Prediction, Result

HEAT_ALPHA = 0.4
HEAT_COLORMAP = "turbo"  # blue (none) to red (strongest): Grad-CAM's usual look, without jet's false bands
UNSEEN_SHADE = 0.35  # brightness left to what a head did not look at
# Drawn with the longer side in this range: a map has no detail finer than one 32 px activation cell, a 12 MP PNG
# would weigh ~20 MB, and a 64 px image would leave no room for its caption.
MIN_SIDE, MAX_SIDE = 512, 1024
AI_RED, REAL_GREEN, VIEW_WHITE = (235, 45, 45), (40, 210, 90), (255, 255, 255)


@dataclass(frozen=True)
class HeadMap:
    """One head's explanation of one image, in the decoded image's pixels."""

    head: str  # "subject" or "source"
    heat: Tensor  # (H, W) float in [0, 1]: Grad-CAM for the answer given, 0 where the head did not look
    boxes: list[Box]  # what the head looked at: its view's region, or its crops
    caption: tuple[str, str]  # what it said; what the heat shows
    ai_probabilities: list[float] = field(default_factory=list)  # per box: each source crop's own (native crops)
    threshold: float = 0.5  # from which a crop's own AI probability would call it AI (its box drawn red)


def last_block(net: DetectiveNet) -> nn.Module:
    """The subject head's Grad-CAM layer: the backbone's last block (MobileNetV2's final 1x1 convolution block),
    whose maps the heads see only through global average pooling (the source head too, unless it reads taps)."""
    return net.backbone[-1]


@contextmanager
def _weights_without_grad(net: nn.Module) -> Iterator[None]:
    """Only the gradient at the last block is needed: without weight gradients the backbone records no autograd
    graph, so explaining takes the memory of predicting."""
    flags = [(p, p.requires_grad) for p in net.parameters()]
    net.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def grad_cam(net: DetectiveNet, layer: nn.Module, scores_of: Callable[[], Tensor]) -> tuple[Tensor, Tensor]:
    """Grad-CAM at `layer` (a backbone block) for `scores_of()`, a forward pass of `net` giving one score per image
    the backbone reads: (maps [N, h, w], non-negative, not normalised; the scores [N]).

    The net runs as in prediction (eval mode, BatchNorm's running statistics), so the images of a batch do not
    interact and the gradient of the scores' sum gives each image the gradient of its own score."""
    kept: list[Tensor] = []

    def keep(module: nn.Module, inputs: object, output: Tensor) -> Tensor:
        kept.append(output.detach().requires_grad_())  # the heads compute from this leaf: its gradient is Grad-CAM's
        return kept[-1]

    handle = layer.register_forward_hook(keep)
    try:
        with torch.inference_mode(False), torch.enable_grad(), _weights_without_grad(net):
            scores = scores_of()
            if len(kept) != 1:
                raise ValueError(f"grad_cam needs one backbone pass, the forward made {len(kept)}")
            (grads,) = torch.autograd.grad(scores.sum(), kept[0])
    finally:
        handle.remove()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * kept[0]).sum(dim=1)).detach().float().cpu(), scores.detach().float().cpu()


def paste(maps: Tensor, boxes: Sequence[Box], height: int, width: int) -> Tensor:
    """Maps [N, h, w] stretched (bilinear) over their boxes of a `height` x `width` image: overlapping boxes
    averaged, 0 outside every box. Boxes may pass the image's edge (the padding of small images)."""
    canvas = (max(height, *(box[3] for box in boxes)), max(width, *(box[2] for box in boxes)))
    sums, counts = torch.zeros(canvas), torch.zeros(canvas)
    for cam, (left, top, right, bottom) in zip(maps, boxes, strict=True):
        size = (bottom - top, right - left)
        sums[top:bottom, left:right] += F.interpolate(cam[None, None], size, mode="bilinear", align_corners=False)[0, 0]
        counts[top:bottom, left:right] += 1
    return (sums / counts.clamp(min=1))[:height, :width]


def normalise(heat: Tensor) -> Tensor:
    """To [0, 1] by the image's strongest evidence (all zeros stays zeros), so that crops compare with each other."""
    peak = heat.max()
    return heat / peak if peak > 0 else heat


def explain_image(predictor: Predictor, image: Tensor, prediction: Prediction) -> list[HeadMap]:
    """The heads' maps for a decoded uint8 (3, H, W) image and the prediction `predictor` made for it: the subject's
    (when the checkpoint has a subject head), then the source's."""
    views = predictor.views
    unplaced = (views.image and not views.image_box) or (views.source and not views.source_boxes)
    if not isinstance(predictor.net, DetectiveNet) or unplaced:
        raise ValueError("explaining needs a DetectiveNet and the evaluation views of its checkpoint")
    image_view, crops = (None if v is None else v.to(predictor.device) for v in views(image))
    subject = [] if prediction.subject is None else [_subject_map(predictor, image, image_view, prediction)]
    return [*subject, _source_map(predictor, image, image_view, crops, prediction)]


def _subject_map(predictor: Predictor, image: Tensor, image_view: Tensor, prediction: Prediction) -> HeadMap:
    index = predictor.subjects.index(prediction.subject)
    net = predictor.net
    cams, _ = grad_cam(net, last_block(net), lambda: net.subject_logits(image_view[None])[:, index])
    said = f"Object: {prediction.subject} ({prediction.subject_confidence:.1%})"
    return _view_map("subject", cams, predictor, image, (said, _heat_note(prediction.subject)))


def _source_map(
    predictor: Predictor, image: Tensor, image_view: Tensor | None, crops: Tensor | None, prediction: Prediction
) -> HeadMap:
    net = predictor.net
    sign = 1.0 if prediction.is_ai else -1.0  # the evidence for the side of the threshold the answer fell on
    answer = "AI generated" if prediction.is_ai else "real photo"
    said = f"Source: {prediction.source} (AI probability {prediction.ai_probability:.2f}, "
    said += f"threshold {prediction.threshold:.2f})"
    if crops is None:  # source_view=resized: the subject's view
        cams, _ = grad_cam(net, net.source_block(), lambda: sign * net.source_logits(image_view[None]))
        return _view_map("source", cams, predictor, image, (said, _heat_note(answer)))
    cams, scores = grad_cam(net, net.source_block(), lambda: sign * net.source_logits(crops))  # one per crop
    height, width = image.shape[-2:]
    boxes = predictor.views.source_boxes(width, height)
    note = f"{_heat_note(answer)} per crop; boxes: each crop's own AI probability, red from the threshold"
    heat = normalise(paste(cams, boxes, height, width))
    crop_probabilities = torch.sigmoid(sign * scores / predictor.temperature).tolist()
    return HeadMap("source", heat, boxes, (said, note), crop_probabilities, prediction.threshold)


def _view_map(head: str, cams: Tensor, predictor: Predictor, image: Tensor, caption: tuple[str, str]) -> HeadMap:
    """A map of the downscaled view, put back over the region of the image it covers."""
    height, width = image.shape[-2:]
    box = predictor.views.image_box(width, height)
    return HeadMap(head, normalise(paste(cams, [box], height, width)), [box], caption)


def _heat_note(answer: str) -> str:
    return f"heat: evidence for '{answer}' (Grad-CAM)"


def render(image: Tensor, head: HeadMap) -> Image.Image:
    """The picture of one head's map: the image with the heat at `HEAT_ALPHA` over what the head saw, the rest
    dimmed, source crops outlined with their AI probability, and the caption in a band below."""
    height, width = image.shape[-2:]
    scale = min(MAX_SIDE / max(height, width), max(1.0, MIN_SIDE / max(height, width)))
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    pixel_order = image.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # as decoded (`load_image`): resize needs it
    base = resize(pixel_order, h, w).permute(1, 2, 0).numpy().astype(np.float32)
    heat = F.interpolate(head.heat[None, None], (h, w), mode="bilinear", antialias=True)[0, 0].clamp(0, 1).numpy()
    boxes = [tuple(round(v * scale) for v in box) for box in head.boxes]
    seen = np.zeros((h, w), dtype=bool)
    for left, top, right, bottom in boxes:
        seen[top:bottom, left:right] = True
    heated = (1 - HEAT_ALPHA) * base + HEAT_ALPHA * 255 * colormaps[HEAT_COLORMAP](heat)[..., :3]
    pixels = np.where(seen[..., None], heated, UNSEEN_SHADE * base)
    picture = Image.fromarray(pixels.round().clip(0, 255).astype(np.uint8))
    font = ImageFont.load_default(size=max(14, round(w / 40)))
    _draw_boxes(ImageDraw.Draw(picture), boxes, head, font, line=max(1, round(w / 400)), view=not seen.all())
    said, note = head.caption
    return _with_caption(picture, [said, note if seen.all() else f"{note}; dimmed: not seen by this head"], font)


def _draw_boxes(
    draw: ImageDraw.ImageDraw, boxes: list[Box], head: HeadMap, font: ImageFont.ImageFont, line: int, view: bool
) -> None:
    """Source crops with their own AI probability (red: AI by itself); with `view`, the region of a view."""
    for i, (left, top, right, bottom) in enumerate(boxes):
        if head.ai_probabilities:
            p = head.ai_probabilities[i]
            colour = AI_RED if p >= head.threshold else REAL_GREEN
            anchor = (left + 2 * line, top + 2 * line)
            draw.rectangle((left, top, right - 1, bottom - 1), outline=colour, width=line)
            draw.rectangle(draw.textbbox(anchor, f"{p:.2f}", font=font), fill=(0, 0, 0))
            draw.text(anchor, f"{p:.2f}", fill=colour, font=font)
        elif view:
            draw.rectangle((left, top, right - 1, bottom - 1), outline=VIEW_WHITE, width=line)


def _with_caption(picture: Image.Image, lines: Sequence[str], font: ImageFont.ImageFont) -> Image.Image:
    """`picture` above a black band holding `lines`, wrapped to its width."""
    margin = max(4, picture.width // 100)
    wrapped = [part for line in lines for part in _wrap(line, font, picture.width - 2 * margin)]
    step = font.getbbox("Ag")[3] + margin // 2
    out = Image.new("RGB", (picture.width, picture.height + len(wrapped) * step + 2 * margin))
    out.paste(picture)
    draw = ImageDraw.Draw(out)
    for i, text in enumerate(wrapped):
        draw.text((margin, picture.height + margin + i * step), text, fill=(255, 255, 255), font=font)
    return out


def _wrap(text: str, font: ImageFont.ImageFont, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if current and font.getlength(candidate) > width:
            lines.append(current)
            candidate = word
        current = candidate
    return [*lines, current] if current else lines


def write_png(picture: Image.Image, path: Path) -> Path:
    """Write whole or not at all: a temporary file beside `path`, renamed into place."""
    with atomic_write(path) as f:
        picture.save(f, format="PNG")
    return path


class Explainer:
    """`predict.py --explain DIR`: for each prediction, `<stem>.subject.png` (with a subject head) and
    `<stem>.source.png` in `folder`; a later input with a stem already used in this run gets `<stem>-2.*`, and so
    on, so that no file of a run overwrites another."""

    def __init__(self, predictor: Predictor, folder: Path) -> None:
        """Makes `folder` now, so that a folder that cannot be made stops the run before any work (OSError)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.predictor, self.folder = predictor, folder
        self.stems: set[str] = set()

    def __call__(self, results: Iterable[Result]) -> Iterator[Result]:
        """The results, each prediction with its written files (`Prediction.explain`, head -> path)."""
        for result in results:
            yield self.explain(result) if isinstance(result, Prediction) else result

    def explain(self, prediction: Prediction) -> Result:
        """Write the pictures of one prediction; a failure to read or write says which file and why."""
        if prediction.path is None:
            raise ValueError("--explain names its pictures after the input files: give paths")
        stem = self._unique_stem(Path(prediction.path).stem)
        files: dict[str, str] = {}
        try:
            image = load_image(prediction.path, self.predictor.views.decode_side)
            for head in explain_image(self.predictor, image, prediction):
                path = write_png(render(image, head), self.folder / f"{stem}.{head.head}.png")
                files[head.head] = str(path)
        except ImageDecodeError as err:
            return Failure(prediction.path, str(err))
        except OSError as err:
            reason = f"{err.filename}: {err.strerror}" if err.strerror else str(err)
            message = f"{prediction.path}: cannot write its picture ({reason}); "
            message += "free some space or choose another --explain folder"
            return Failure(prediction.path, message)
        return dataclasses.replace(prediction, explain=files)

    def _unique_stem(self, stem: str) -> str:
        unique, n = stem, 1
        while unique in self.stems:
            n += 1
            unique = f"{stem}-{n}"
        self.stems.add(unique)
        return unique
