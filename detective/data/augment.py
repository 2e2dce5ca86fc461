"""Random train-time transforms. Kept apart from `transforms` so prediction never imports them.

Randomness comes from torch's generator, which Lightning seeds per dataloader worker. Blur and
JPEG re-compression follow CNNDetection (Wang et al., 2020): they teach the source head to look
past the compression and resampling a real-world image has been through.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image, ImageFilter

from detective.data.transforms import DEFAULT_CROP_FRACTION, center_crop, resize_shorter, resize_size, to_uint8_tensor


@dataclass(frozen=True)
class AugmentConfig:
    """`data.augment.*`: `crop` is `random_resized` (scale range), `random` (fixed scale) or `center`."""

    crop: str = "random_resized"
    scale: Sequence[float] = (0.35, 1.0)
    flip: bool = True
    blur_prob: float = 0.0
    blur_sigma: Sequence[float] = (0.1, 3.0)
    jpeg_prob: float = 0.0
    jpeg_quality: Sequence[int] = (30, 100)

    @property
    def deterministic(self) -> bool:
        """True when every epoch gives each image the same pixels (center crop, no flip, blur or JPEG)."""
        return self.crop == "center" and not self.flip and not self.blur_prob and not self.jpeg_prob


def _uniform(lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand(()).item()


def _randint(lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, ()).item())


def random_resized_crop(img: Image.Image, size: int, scale: Sequence[float]) -> Image.Image:
    """A crop of random area (fraction in `scale`) and aspect ratio in [3/4, 4/3], resized to size x size."""
    w, h = img.size
    for _ in range(10):
        area = w * h * _uniform(*scale)
        ratio = math.exp(_uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round((area * ratio) ** 0.5), round((area / ratio) ** 0.5)
        if 0 < cw <= w and 0 < ch <= h:
            left, top = _randint(0, w - cw), _randint(0, h - ch)
            return img.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))
    side = min(w, h)  # no valid crop found in 10 tries: fall back to the central square
    left, top = (w - side) // 2, (h - side) // 2
    return img.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))


def random_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    left, top = _randint(0, w - size), _randint(0, h - size)
    return img.crop((left, top, left + size, top + size))


def jpeg_recompress(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def train_transform(
    image_size: int, cfg: AugmentConfig = AugmentConfig(), crop_fraction: float = DEFAULT_CROP_FRACTION
) -> Callable[[Image.Image], torch.Tensor]:
    """Blur/JPEG first (on the image as found), then crop and flip; returns uint8 (3, S, S)."""
    if cfg.crop not in ("random_resized", "random", "center"):
        raise ValueError(f"unknown data.augment.crop {cfg.crop!r}: use random_resized, random or center")
    size = resize_size(image_size, crop_fraction)

    def transform(img: Image.Image) -> torch.Tensor:
        if cfg.blur_prob and torch.rand(()) < cfg.blur_prob:
            img = img.filter(ImageFilter.GaussianBlur(_uniform(*cfg.blur_sigma)))
        if cfg.jpeg_prob and torch.rand(()) < cfg.jpeg_prob:
            img = jpeg_recompress(img, _randint(*cfg.jpeg_quality))
        if cfg.crop == "random_resized":
            img = random_resized_crop(img, image_size, cfg.scale)
        else:
            img = resize_shorter(img, size)
            img = random_crop(img, image_size) if cfg.crop == "random" else center_crop(img, image_size)
        if cfg.flip and torch.rand(()) < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_uint8_tensor(img)

    return transform
