"""The eval views in numpy alone: the torch-free twins of `transforms.eval_transform` and `views.grid_crops`, for
ONNX models.

Images are (H, W, 3) uint8 arrays, as `images.load_rgb_array` decodes them. The sizes, the crop box, the crop grid
and the choice of views come from `geometry`, like the torch views', and `resize` computes what torch's antialiased
bilinear kernel for uint8 computes, step for step: triangle-filter weights in float64, normalised per output pixel,
rounded to 16-bit fixed point at the precision torch picks for them, a horizontal pass rounded to uint8, then a
vertical one. So the pixels are the same, not merely close. (Pillow's BILINEAR is the same filter with other
fixed-point rounding, one level of 255 off in 0.1-1% of values, which would make the ONNX path's probabilities
differ by more than float rounding.)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from detective.data.geometry import (
    DEFAULT_CROP_FRACTION,
    ViewSettings,
    center_box,
    crop_grid,
    resize_size,
    shorter_side_size,
)

ArrayViews = tuple[np.ndarray | None, np.ndarray | None]  # (downscaled image (S, S, 3), native crops (K, C, C, 3))

_MAX_PRECISION = 22  # bits; torch's bound on the fixed-point precision of the weights


def filter_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Input indices (out_size, taps) and fixed-point weights (same shape) of each output pixel, and their precision.

    The float arithmetic follows torch's in order (a product by the inverse scale, sums left to right), so the
    weights, and hence every rounding after them, are torch's."""
    scale = in_size / out_size
    support = max(scale, 1.0)  # the triangle's half-width in input pixels, widened when shrinking (antialiasing)
    taps = math.ceil(support) * 2 + 1
    centers = scale * (np.arange(out_size) + 0.5)
    first = np.maximum((centers - support + 0.5).astype(np.int64), 0)
    count = np.clip(np.minimum((centers + support + 0.5).astype(np.int64), in_size) - first, 0, taps)
    tap = np.arange(taps)
    weights = np.maximum(0.0, 1.0 - np.abs((tap + first[:, None] - centers[:, None] + 0.5) * (1.0 / support)))
    weights[tap >= count[:, None]] = 0.0
    total = np.zeros(out_size)
    for t in range(taps):
        total += weights[:, t]
    np.divide(weights, total[:, None], out=weights, where=total[:, None] != 0)
    largest = weights.max()
    precision = 0  # the most bits that keep the largest weight, doubled, under int16's range
    while precision < _MAX_PRECISION and int(0.5 + largest * (1 << (precision + 1))) < 1 << 15:
        precision += 1
    fixed = np.floor(0.5 + weights * (1 << precision)).astype(np.int32)
    return np.minimum(first[:, None] + tap, in_size - 1), fixed, precision


def _resize_axis(image: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """One pass of the separable filter along `axis` (0: rows, 1: columns), rounded and clamped to uint8."""
    if image.shape[axis] == out_size:
        return image
    index, weights, precision = filter_weights(image.shape[axis], out_size)
    shape = list(image.shape)
    shape[axis] = out_size
    along = [1, 1, 1]
    along[axis] = out_size
    acc = np.full(shape, 1 << (precision - 1), dtype=np.int32)  # the rounding term
    term = np.empty_like(acc)
    for t in range(index.shape[1]):
        acc += np.multiply(weights[:, t].reshape(along), np.take(image, index[:, t], axis=axis), out=term)
    return np.clip(acc >> precision, 0, 255).astype(np.uint8)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased bilinear resize of a uint8 (H, W, 3) image: the same pixels as `transforms.resize`."""
    return _resize_axis(_resize_axis(image, width, axis=1), height, axis=0)


def resize_shorter(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the shorter side is `size`, keeping the aspect ratio."""
    h, w = image.shape[:2]
    return image if min(w, h) == size else resize(image, *shorter_side_size(h, w, size))


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    top, left = center_box(*image.shape[:2], size)
    return image[top : top + size, left : left + size]


def eval_transform(image_size: int, crop_fraction: float = DEFAULT_CROP_FRACTION) -> Callable[[np.ndarray], np.ndarray]:
    """Resize shorter side, center-crop `image_size`: uint8 (S, S, 3), the pixels `transforms.eval_transform` gives."""
    size = resize_size(image_size, crop_fraction)

    def transform(image: np.ndarray) -> np.ndarray:
        return center_crop(resize_shorter(image, size), image_size)

    return transform


def pad_to(image: np.ndarray, crop: int) -> np.ndarray:
    """Zero-pad an (H, W, 3) image on the right and bottom so both sides are at least `crop`."""
    h, w = image.shape[:2]
    if h >= crop and w >= crop:
        return image
    return np.pad(image, ((0, max(crop - h, 0)), (0, max(crop - w, 0)), (0, 0)))


def grid_crops(image: np.ndarray, crop: int, max_crops: int) -> np.ndarray:
    """The evaluation grid of a uint8 (H, W, 3) image as (K, crop, crop, 3): the crops `views.grid_crops` gives."""
    image = pad_to(image, crop)
    h, w = image.shape[:2]
    return np.stack([image[y : y + crop, x : x + crop] for x, y in crop_grid(w, h, crop, max_crops)])


def eval_views(settings: ViewSettings) -> Callable[[np.ndarray], ArrayViews]:
    """The views `views.eval_views` makes of a decoded image, in numpy: (downscaled image or None, crops or None)."""
    image = eval_transform(settings.image_size, settings.crop_fraction) if settings.takes_image else None

    def views(decoded: np.ndarray) -> ArrayViews:
        crops = grid_crops(decoded, settings.source_crop, settings.source_crops) if settings.native else None
        return (image(decoded) if image else None), crops

    return views
