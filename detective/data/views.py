"""What the source head sees: crops at the image's own resolution, never resampled.

Generators leave their traces at the pixel level (upsampling grids, spectral peaks, denoiser texture); any resize
blends neighbouring pixels and wipes most of them out, and one downscaled view shows little of a large image. So the
source head looks at `crop` x `crop` pixels copied out of the decoded image: one at a random place per training step,
and at validation, test and prediction a grid of up to `max_crops` crops spread evenly over the whole image, whose
source logits are averaged (`detective.model.net.mean_by_owner`). The grid (`geometry.crop_grid`) and the choice of
views (`geometry.ViewSettings`) are pure arithmetic, so every prediction path (torch or not) crops the same places.

An image smaller than the crop is padded with zeros on the right and bottom rather than upscaled: padding adds no
interpolation trace of its own, and the zero border is the same for real and AI images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch.nn import functional as F

from detective.data.geometry import ViewSettings, crop_grid
from detective.data.transforms import eval_box, eval_transform

View = Callable[[torch.Tensor], torch.Tensor]
Box = tuple[int, int, int, int]  # (left, top, right, bottom) in the decoded image's pixels


def crop_boxes(width: int, height: int, crop: int, max_crops: int) -> list[Box]:
    """The boxes of the evaluation grid of a `width` x `height` image, row by row; they pass its right or bottom
    edge where it is smaller than the crop (the zero padding)."""
    padded_w, padded_h = max(width, crop), max(height, crop)
    return [(x, y, x + crop, y + crop) for x, y in crop_grid(padded_w, padded_h, crop, max_crops)]


def pad_to(image: torch.Tensor, crop: int) -> torch.Tensor:
    """Zero-pad a (3, H, W) image on the right and bottom so both sides are at least `crop`."""
    h, w = image.shape[-2:]
    if h >= crop and w >= crop:
        return image
    return F.pad(image, (0, max(crop - w, 0), 0, max(crop - h, 0)))


def grid_crops(image: torch.Tensor, crop: int, max_crops: int) -> torch.Tensor:
    """The evaluation grid of a uint8 (3, H, W) image as (K, 3, crop, crop), channels_last as decoded images are:
    stacking their channels-first views transposed every crop, and batching them transposed it back."""
    h, w = image.shape[-2:]
    hwc = pad_to(image, crop).permute(1, 2, 0).numpy()
    boxes = crop_boxes(w, h, crop, max_crops)
    # Stacked by numpy: a torch copy this size runs an OpenMP team of its own in the calling thread (prediction's
    # decoding threads), and with more OpenMP threads than cores the network's threads sleep between calls.
    crops = np.stack([hwc[top:bottom, left:right] for left, top, right, bottom in boxes])
    return torch.from_numpy(crops).permute(0, 3, 1, 2)


def random_crop_box(width: int, height: int, crop: int) -> tuple[int, int]:
    """(left, top) of a uniformly placed crop (0 where the image is smaller than the crop)."""
    left = int(torch.randint(0, max(width - crop, 0) + 1, ()).item())
    top = int(torch.randint(0, max(height - crop, 0) + 1, ()).item())
    return left, top


@dataclass(frozen=True)
class Views:
    """What the network gets of one decoded image: the downscaled `image` view (for the subject head, and for the
    source head when it has no native crops) and the source head's native crops; either may be absent. The evaluation
    views also say where in a width x height image they lie, for showing what each head looked at."""

    image: View | None
    source: View | None
    decode_side: int | None  # the shorter side decoding may reduce a big JPEG to; None: full resolution
    image_box: Callable[[int, int], Box] | None = None
    source_boxes: Callable[[int, int], list[Box]] | None = None

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return (self.image(image) if self.image else None), (self.source(image) if self.source else None)


def eval_views(
    image_size: int,
    crop_fraction: float,
    source_view: str,
    source_crop: int,
    source_crops: int,
    subject_head: bool,
    image_view: View | None = None,
    source_train_view: View | None = None,
) -> Views:
    """The views validation, testing and prediction take (one definition for all three); training swaps in its
    random `image_view` and `source_train_view`."""
    settings = ViewSettings(image_size, crop_fraction, source_view, source_crop, source_crops, subject_head)
    image = image_box = None
    if settings.takes_image:
        image = image_view or eval_transform(image_size, crop_fraction)
        image_box = None if image_view else partial(eval_box, image_size=image_size, crop_fraction=crop_fraction)
    source = source_boxes = None
    if settings.native:
        source = source_train_view or partial(grid_crops, crop=source_crop, max_crops=source_crops)
        source_boxes = None if source_train_view else partial(crop_boxes, crop=source_crop, max_crops=source_crops)
    return Views(image, source, settings.decode_side, image_box, source_boxes)
