"""The numpy twin of the eval transform gives the torch transform's pixels exactly, at every size."""

import numpy as np
import pytest
import torch
from PIL import Image

from detective.data import transforms, transforms_np


def noise(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Independent random pixels: the hardest case for rounding (every value lands anywhere)."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def torch_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return transforms.resize(torch.from_numpy(image).permute(2, 0, 1), height, width).permute(1, 2, 0).numpy()


# (width, height) in, (width, height) out: down, up, mixed, a big reduction (many taps), from and to one pixel.
SIZES = [
    ((640, 480), (341, 256)),
    ((48, 40), (307, 256)),
    ((700, 300), (120, 400)),
    ((2016, 1512), (299, 224)),
    ((1, 1), (5, 3)),
    ((31, 500), (1, 1)),
    ((257, 256), (256, 255)),
]


@pytest.mark.parametrize(("size", "out"), SIZES)
def test_resize_gives_torchs_pixels_exactly(size, out):
    image = noise(*size)
    assert np.array_equal(transforms_np.resize(image, out[1], out[0]), torch_resize(image, out[1], out[0]))


def test_resize_matches_torch_at_random_sizes():
    rng = np.random.default_rng(7)
    for seed in range(40):
        w, h, ow, oh = (int(v) for v in rng.integers(1, 400, 4))
        image = noise(w, h, seed)
        assert np.array_equal(transforms_np.resize(image, oh, ow), torch_resize(image, oh, ow)), (w, h, ow, oh)


def test_resize_is_within_one_level_of_pillows_bilinear_filter():
    """The same filter as Pillow's BILINEAR, as the torch resize is (Pillow rounds its weights otherwise)."""
    image = noise(640, 480)
    pillow = np.asarray(Image.fromarray(image).resize((341, 256), Image.Resampling.BILINEAR, reducing_gap=None))
    assert np.abs(transforms_np.resize(image, 256, 341).astype(int) - pillow).max() <= 1


@pytest.mark.parametrize("size", [(640, 480), (300, 900), (73, 73), (50, 40), (7, 5), (150, 9)])
@pytest.mark.parametrize(("image_size", "crop_fraction"), [(224, 0.875), (64, 0.875), (32, 1.0)])
def test_eval_transform_gives_the_torch_transforms_pixels(size, image_size, crop_fraction):
    image = noise(*size)
    ours = transforms_np.eval_transform(image_size, crop_fraction)(image)
    theirs = transforms.eval_transform(image_size, crop_fraction)(torch.from_numpy(image).permute(2, 0, 1))
    assert ours.shape == (image_size, image_size, 3) and ours.dtype == np.uint8
    assert np.array_equal(ours, theirs.permute(1, 2, 0).numpy())
