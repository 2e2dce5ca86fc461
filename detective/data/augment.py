"""Random train-time transforms. Kept apart from `transforms` so prediction never imports them.

Randomness comes from torch's generator, which Lightning seeds per dataloader worker. Blur and
JPEG re-compression follow CNNDetection (Wang et al., 2020): they teach the source head to look
past the compression and resampling a real-world image has been through.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image, ImageFilter

from detective.data.images import jpeg_recompress
from detective.data.transforms import (
    DEFAULT_CROP_FRACTION,
    center_crop,
    crop,
    resize,
    resize_shorter,
    resize_size,
    to_pil,
    to_uint8_tensor,
)
from detective.data.views import grid_crops, pad_to, random_crop_box


@dataclass(frozen=True)
class AugmentConfig:
    """`data.augment.*`: `crop` is `random_resized` (scale range), `random` (fixed scale) or `center`.

    Blur and JPEG re-compression apply to both views; `rescale` (a factor range) only to the source head's native
    crop, where it and JPEG at random qualities make size and compression unlearnable as shortcuts."""

    crop: str = "random_resized"
    scale: Sequence[float] = (0.35, 1.0)
    flip: bool = True
    blur_prob: float = 0.0
    blur_sigma: Sequence[float] = (0.1, 3.0)
    jpeg_prob: float = 0.0
    jpeg_quality: Sequence[int] = (30, 100)
    rescale_prob: float = 0.0
    rescale: Sequence[float] = (0.5, 1.5)


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand(()).item()


def _randint(lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, ()).item())


def random_resized_crop(image: torch.Tensor, size: int, scale: Sequence[float]) -> torch.Tensor:
    """A crop of random area (fraction in `scale`) and aspect ratio in [3/4, 4/3], resized to size x size."""
    h, w = image.shape[-2:]
    for _ in range(10):
        area = w * h * _uniform(*scale)
        ratio = math.exp(_uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round((area * ratio) ** 0.5), round((area / ratio) ** 0.5)
        if 0 < cw <= w and 0 < ch <= h:
            return resize(crop(image, _randint(0, w - cw), _randint(0, h - ch), cw, ch), size, size)
    side = min(w, h)  # no valid crop found in 10 tries: fall back to the central square
    return resize(center_crop(image, side), size, size)


def random_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    return crop(image, _randint(0, w - size), _randint(0, h - size), size, size)


def _with_pillow(image: torch.Tensor, op: Callable[[Image.Image], Image.Image]) -> torch.Tensor:
    return to_uint8_tensor(op(to_pil(image)))


def _compressed_and_blurred(image: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """CNNDetection's blur, then JPEG re-compression, each with its probability."""
    if cfg.blur_prob and torch.rand(()) < cfg.blur_prob:
        blur = ImageFilter.GaussianBlur(_uniform(*cfg.blur_sigma))
        image = _with_pillow(image, lambda img: img.filter(blur))
    if cfg.jpeg_prob and torch.rand(()) < cfg.jpeg_prob:
        quality = _randint(*cfg.jpeg_quality)
        image = _with_pillow(image, lambda img: jpeg_recompress(img, quality))
    return image


def _flipped(image: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    return image.flip(-1) if cfg.flip and torch.rand(()) < 0.5 else image


def train_transform(
    image_size: int, cfg: AugmentConfig = AugmentConfig(), crop_fraction: float = DEFAULT_CROP_FRACTION
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Blur/JPEG first (on the image as found), then crop and flip a `load_image` tensor; returns uint8 (3, S, S)."""
    if cfg.crop not in ("random_resized", "random", "center"):
        raise ValueError(f"unknown data.augment.crop {cfg.crop!r}: use random_resized, random or center")
    size = resize_size(image_size, crop_fraction)

    def transform(image: torch.Tensor) -> torch.Tensor:
        image = _compressed_and_blurred(image, cfg)
        if cfg.crop == "random_resized":
            image = random_resized_crop(image, image_size, cfg.scale)
        else:
            image = resize_shorter(image, size)
            image = random_crop(image, image_size) if cfg.crop == "random" else center_crop(image, image_size)
        return _flipped(image, cfg)

    return transform


def source_train_transform(
    crop_size: int, cfg: AugmentConfig = AugmentConfig(), crops: int | str = 1, max_crops: int = 16
) -> Callable[[torch.Tensor], torch.Tensor]:
    """`crops` crops of the image at its own resolution, each placed at random, as (crops, 3, crop, crop); or, with
    `crops="grid"`, the judging grid of up to `max_crops` crops.

    The network averages their logits into the image's one source logit, as it averages the grid when judging, so
    training optimises what is judged. The grid shows training exactly what is judged; a backbone that does not
    learn then sees the same crops every epoch (flipped or not), whose features `model.cache_features` computes once.

    The shortcut-proof steps come before each crop, in this order: an occasional rescale by a random factor (the
    crop is cut from a region `crop / factor` wide, resized to the crop; random crops only), blur, then JPEG
    re-compression at a random quality. They are applied to the region the crop needs, not the whole image: the same
    pixels, far cheaper on big photos (only JPEG's 8x8 block grid may fall elsewhere, which no detector should rely
    on either)."""
    if crops == "grid":
        return lambda image: torch.stack(
            [_flipped(_compressed_and_blurred(c, cfg), cfg) for c in grid_crops(image, crop_size, max_crops)]
        )
    if not isinstance(crops, int) or crops < 1:
        raise ValueError(f"data.source_train_crops must be a number of at least 1 or 'grid', got {crops!r}")

    def one_crop(image: torch.Tensor) -> torch.Tensor:
        region = crop_size
        if cfg.rescale_prob and torch.rand(()) < cfg.rescale_prob:
            region = max(1, round(crop_size / _uniform(*cfg.rescale)))
        image = pad_to(image, region)
        h, w = image.shape[-2:]
        left, top = random_crop_box(w, h, region)
        image = crop(image, left, top, region, region)
        if region != crop_size:
            image = resize(image, crop_size, crop_size)
        return _flipped(_compressed_and_blurred(image, cfg), cfg)

    return lambda image: torch.stack([one_crop(image) for _ in range(crops)])
