"""The numpy twins of the eval views give the torch views' pixels exactly, at every size."""

from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image

from detective.data import transforms, transforms_np, views
from detective.data.geometry import ViewSettings


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


def as_torch(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) pixels as `load_image` gives them: (3, H, W) on the same memory."""
    return torch.from_numpy(image).permute(2, 0, 1)


@pytest.mark.parametrize("size", [(640, 480), (97, 200), (48, 48), (50, 41), (7, 5), (30, 90)])
@pytest.mark.parametrize(("crop", "max_crops"), [(48, 8), (32, 1), (16, 100)])
def test_grid_crops_are_the_torch_views_crops_padding_included(size, crop, max_crops):
    image = noise(*size)
    ours = transforms_np.grid_crops(image, crop, max_crops)
    theirs = views.grid_crops(as_torch(image), crop, max_crops)
    assert ours.shape == (len(theirs), crop, crop, 3) and ours.dtype == np.uint8
    assert np.array_equal(ours, theirs.permute(0, 2, 3, 1).numpy())


@pytest.mark.parametrize(
    "settings",
    [
        ViewSettings(64, 0.875, "native", 48, 8, subject_head=True),
        ViewSettings(64, 0.875, "native", 48, 8, subject_head=False),
        ViewSettings(32, 1.0, "resized", 32, 1, subject_head=True),
        ViewSettings(32, 1.0, "resized", 32, 1, subject_head=False),
    ],
)
def test_eval_views_are_the_torch_views(settings):
    image = noise(130, 70)
    ours = transforms_np.eval_views(settings)(image)
    theirs = views.eval_views(**asdict(settings))(as_torch(image))
    assert [v is None for v in ours] == [v is None for v in theirs] == [not settings.takes_image, not settings.native]
    for got, expected in zip(ours, theirs, strict=True):
        assert got is None or np.array_equal(np.moveaxis(got, -1, -3), expected.numpy())
