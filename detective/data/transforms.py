"""The deterministic eval transform, shared by validation, testing and `predict.py`.

Images stay uint8 (C, H, W) until they are batched; normalisation to the backbone's mean/std
happens once per batch inside the model. This module imports only Pillow, numpy and torch, so
the prediction path pays for nothing else.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_FRACTION = 0.875  # torchvision's ImageNet recipe: resize to 256, crop 224


def resize_size(image_size: int, crop_fraction: float = DEFAULT_CROP_FRACTION) -> int:
    """Shorter side to resize to before center-cropping `image_size`."""
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    return round(image_size / crop_fraction)


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is `size` (antialiased), keeping the aspect ratio."""
    w, h = img.size
    if min(w, h) == size:
        return img
    scale = size / min(w, h)
    return img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def to_uint8_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 tensor (3, H, W), without a float copy."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def eval_transform(
    image_size: int, crop_fraction: float = DEFAULT_CROP_FRACTION
) -> Callable[[Image.Image], torch.Tensor]:
    """Resize shorter side, center-crop `image_size`, return uint8 (3, S, S): the same in training and prediction."""
    size = resize_size(image_size, crop_fraction)

    def transform(img: Image.Image) -> torch.Tensor:
        return to_uint8_tensor(center_crop(resize_shorter(img, size), image_size))

    return transform
