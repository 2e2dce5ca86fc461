"""The eval views' sizes and boxes as plain arithmetic, shared by the torch views and their numpy twins.

`transforms.py` and `views.py` (torch) and `transforms_np.py` (numpy, for the torch-free ONNX path) take their
target sizes, crop boxes, crop grids and the choice of views from here, so the two can only differ in how pixels
are interpolated, never in where they come from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_CROP_FRACTION = 0.875  # torchvision's ImageNet recipe: resize to 256, crop 224

SOURCE_VIEWS = (
    "native",
    "resized",
)  # data.source_view: native crops, or the subject's downscaled view (the original's)


def check_source_view(view: str) -> str:
    if view not in SOURCE_VIEWS:
        raise ValueError(f"unknown data.source_view {view!r}: use one of {', '.join(SOURCE_VIEWS)}")
    return view


def resize_size(image_size: int, crop_fraction: float = DEFAULT_CROP_FRACTION) -> int:
    """Shorter side to resize to before center-cropping `image_size`."""
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    return round(image_size / crop_fraction)


def shorter_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) with the shorter side resized to `size`, keeping the aspect ratio (neither side below it)."""
    scale = size / min(width, height)
    return max(size, round(height * scale)), max(size, round(width * scale))


def center_box(height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of the centered `size` x `size` crop."""
    return (height - size) // 2, (width - size) // 2


def _positions(length: int, crop: int, count: int) -> list[int]:
    """`count` offsets from 0 to `length - crop`, evenly spaced (centred when one)."""
    span = max(length - crop, 0)
    if count == 1:
        return [span // 2]
    return [round(i * span / (count - 1)) for i in range(count)]


def grid_shape(width: int, height: int, crop: int, max_crops: int) -> tuple[int, int]:
    """(columns, rows) of the crop grid: enough to cover the image when `max_crops` allows, else the largest grid
    within `max_crops` whose shape follows the image's aspect ratio."""
    if max_crops < 1:
        raise ValueError(f"data.source_crops must be at least 1, got {max_crops}")
    cols, rows = max(1, math.ceil(width / crop)), max(1, math.ceil(height / crop))
    if cols * rows <= max_crops:
        return cols, rows
    cols = min(cols, max(1, round(math.sqrt(max_crops * width / height))), max_crops)
    return cols, min(rows, max(1, max_crops // cols))


def crop_grid(width: int, height: int, crop: int, max_crops: int) -> list[tuple[int, int]]:
    """(left, top) of every crop of the evaluation grid, coarse to fine (`spread_order`)."""
    cols, rows = grid_shape(width, height, crop, max_crops)
    cells = [(left, top) for top in _positions(height, crop, rows) for left in _positions(width, crop, cols)]
    return [cells[i] for i in spread_order(cols, rows)]


def spread_order(cols: int, rows: int) -> list[int]:
    """The cells of a `cols` x `rows` grid (row by row) in an order whose every beginning is spread over the whole
    grid: the centre first, then each time the cell farthest from those already taken (ties: the first). So an
    image's first few crops see all of it (`detective.predict.settling`)."""
    cells = [(c, r) for r in range(rows) for c in range(cols)]
    centre = ((cols - 1) / 2, (rows - 1) / 2)
    order = [min(range(len(cells)), key=lambda i: _squared_distance(cells[i], centre))]
    nearest = [_squared_distance(cell, cells[order[0]]) for cell in cells]  # to the cells taken so far
    while len(order) < len(cells):
        taken = max((i for i in range(len(cells)) if i not in order), key=lambda i: (nearest[i], -i))
        order.append(taken)
        nearest = [min(d, _squared_distance(cell, cells[taken])) for d, cell in zip(nearest, cells, strict=True)]
    return order


def _squared_distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2


@dataclass(frozen=True)
class ViewSettings:
    """The settings that decide what the net is shown of an image when it is judged (`views.eval_views`): which
    views exist, and at what sizes. Read from a checkpoint once, so the PyTorch and ONNX paths cannot choose apart."""

    image_size: int
    crop_fraction: float
    source_view: str
    source_crop: int
    source_crops: int
    subject_head: bool

    def __post_init__(self) -> None:
        check_source_view(self.source_view)

    @classmethod
    def from_hparams(cls, hp: Mapping[str, Any]) -> ViewSettings:
        """A checkpoint's settings; checkpoints from before the native view judged the source on the downscaled
        image, with one view."""
        return cls(
            int(hp["image_size"]),
            float(hp["crop_fraction"]),
            str(hp.get("source_view", "resized")),
            int(hp.get("source_crop", hp["image_size"])),
            int(hp.get("source_crops", 1)),
            subject_head=len(hp["subjects"]) >= 2,
        )

    @property
    def native(self) -> bool:
        """The source head reads native crops (else the downscaled image)."""
        return self.source_view == "native"

    @property
    def takes_image(self) -> bool:
        """Some head reads the downscaled image: the subject head, or the source head without native crops."""
        return self.subject_head or not self.native

    @property
    def decode_side(self) -> int | None:
        """The shorter side decoding may reduce a big JPEG to; None: full resolution, which native crops need."""
        return None if self.native else resize_size(self.image_size, self.crop_fraction)
