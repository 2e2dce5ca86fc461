"""The deterministic eval transform, shared by validation, testing and `predict.py`.

Images stay uint8 (C, H, W) until they are batched; normalisation to the backbone's mean/std
happens once per batch inside the model. This module imports only Pillow, numpy and torch, so
the prediction path pays for nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import get_worker_info

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
    """RGB PIL image -> uint8 tensor (3, H, W) without a float copy. Its memory stays in PIL's pixel order
    (H, W, C), i.e. channels_last: `stack_channels_last` batches it without a transpose, as the model wants it."""
    arr = np.asarray(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def stack_channels_last(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """(3, H, W) uint8 tensors -> one (B, 3, H, W) batch in channels_last memory. In a DataLoader worker the batch
    is built straight into shared memory, so handing it to the main process copies nothing more."""
    hwc = [im.permute(1, 2, 0) for im in images]
    out = torch.empty((len(hwc), *hwc[0].shape), dtype=hwc[0].dtype)
    if get_worker_info() is not None:
        out.share_memory_()
    return torch.stack(hwc, out=out).permute(0, 3, 1, 2)


def eval_transform(
    image_size: int, crop_fraction: float = DEFAULT_CROP_FRACTION
) -> Callable[[Image.Image], torch.Tensor]:
    """Resize shorter side, center-crop `image_size`, return uint8 (3, S, S): the same in training and prediction."""
    size = resize_size(image_size, crop_fraction)

    def transform(img: Image.Image) -> torch.Tensor:
        return to_uint8_tensor(center_crop(resize_shorter(img, size), image_size))

    return transform
