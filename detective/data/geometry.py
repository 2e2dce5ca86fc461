"""The eval transform's sizes and boxes as plain arithmetic, shared by the torch transform and its numpy twin.

Both `transforms.py` (torch) and `transforms_np.py` (numpy, for the torch-free ONNX path) take their target sizes
and crop boxes from here, so the two can only differ in how pixels are interpolated, never in where they come from.
"""

from __future__ import annotations

DEFAULT_CROP_FRACTION = 0.875  # torchvision's ImageNet recipe: resize to 256, crop 224


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
