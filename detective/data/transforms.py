"""The deterministic eval transform, shared by validation, testing and `predict.py`.

A decoded image becomes a uint8 (3, H, W) tensor in channels_last memory (`load_image`) and stays uint8 until it is
batched; normalisation to the backbone's mean/std happens once per batch inside the model. Resizing is torch's
antialiased bilinear for uint8 images: Pillow's filter to within one level of 255, and faster (its vectorised
channels_last kernel). This module imports only Pillow, numpy and torch,
so the prediction path pays for nothing else. Sizes and boxes come from `geometry`, which `transforms_np` (the
torch-free twin used with ONNX models) shares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import get_worker_info

from detective.data.geometry import DEFAULT_CROP_FRACTION, center_box, resize_size, shorter_side_size
from detective.data.images import ImageSource, load_rgb_array


def load_image(source: ImageSource, min_side: int | None = None) -> torch.Tensor:
    """`load_rgb` (decoding at reduced scale down to `min_side`) as the uint8 (3, H, W) tensor the transforms take."""
    return _channels_first(load_rgb_array(source, min_side))


def to_uint8_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> uint8 tensor (3, H, W) without a float copy."""
    return _channels_first(np.array(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.uint8))


def _channels_first(hwc: np.ndarray) -> torch.Tensor:
    """(H, W, 3) array -> (3, H, W) tensor on the same memory, which stays in pixel order (H, W, C), i.e.
    channels_last: resizing takes its fast path and `stack_channels_last` batches it as it is."""
    return torch.from_numpy(hwc).permute(2, 0, 1)


def to_pil(image: torch.Tensor) -> Image.Image:
    """uint8 (3, H, W) tensor -> RGB PIL image, for the few augmentations only Pillow has."""
    return Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())


def resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Antialiased bilinear resize of a uint8 (3, H, W) image (Pillow's BILINEAR filter), into channels_last memory.

    The op behind `F.interpolate(..., antialias=True)`, given its output: handed a channels_last one, its uint8
    kernel writes it directly; `F.interpolate` would return a contiguous copy, and the layout would need
    transposing back."""
    out = torch.empty((1, height, width, image.shape[0]), dtype=image.dtype).permute(0, 3, 1, 2)
    torch.ops.aten._upsample_bilinear2d_aa.out(image.unsqueeze(0), [height, width], False, None, None, out=out)
    return out[0]


def resize_shorter(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize so the shorter side is `size`, keeping the aspect ratio."""
    h, w = image.shape[-2:]
    return image if min(w, h) == size else resize(image, *shorter_side_size(h, w, size))


def crop(image: torch.Tensor, left: int, top: int, width: int, height: int) -> torch.Tensor:
    return image[:, top : top + height, left : left + width]


def center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    top, left = center_box(*image.shape[-2:], size)
    return crop(image, left, top, size, size)


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
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Resize shorter side, center-crop `image_size` of a `load_image` tensor, giving uint8 (3, S, S): the same in
    training and prediction."""
    size = resize_size(image_size, crop_fraction)

    def transform(image: torch.Tensor) -> torch.Tensor:
        return center_crop(resize_shorter(image, size), image_size)

    return transform


def eval_box(width: int, height: int, image_size: int, crop_fraction: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the region of a `width` x `height` image that `eval_transform` keeps: its
    arithmetic, mapped back to the image's pixels (for showing what the subject head saw)."""
    size = resize_size(image_size, crop_fraction)
    scale = size / min(width, height)
    resized_w, resized_h = max(size, round(width * scale)), max(size, round(height * scale))
    left, top = (resized_w - image_size) // 2, (resized_h - image_size) // 2
    fx, fy = width / resized_w, height / resized_h
    return round(left * fx), round(top * fy), round((left + image_size) * fx), round((top + image_size) * fy)
