import numpy as np
import pytest
import torch
from PIL import Image

from detective.data import augment
from detective.data.augment import AugmentConfig, train_transform
from detective.data.transforms import (
    eval_box,
    eval_transform,
    load_image,
    resize,
    resize_size,
    to_pil,
    to_uint8_tensor,
)


def gradient(w: int, h: int) -> torch.Tensor:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :, None].repeat(h, 0).repeat(3, 2)
    return to_uint8_tensor(Image.fromarray(x))


def noise(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("size", [(341, 256), (120, 90), (700, 300), (31, 500), (1, 1)])
def test_resize_agrees_with_pillows_bilinear_filter(size):
    """Down, up and mixed: at most one level of 255 apart (models trained with Pillow's resize see the same images;
    on this noise, the worst case, up to a quarter of the values are one level off, on photos about 1%)."""
    img = noise(640, 480)
    ours = resize(to_uint8_tensor(img), size[1], size[0]).permute(1, 2, 0).numpy().astype(int)
    pillow = np.asarray(img.resize(size, Image.Resampling.BILINEAR)).astype(int)
    assert np.abs(ours - pillow).max() <= 1 and np.abs(ours - pillow).mean() < 0.3


def test_images_stay_channels_last_uint8_through_the_eval_transform():
    image = load_image(noise(300, 200))
    out = eval_transform(64)(image)
    assert image.stride() == (1, 300 * 3, 3) and out.stride()[0] == 1 and out.dtype == torch.uint8  # (H, W, C) memory
    assert np.array_equal(np.asarray(to_pil(image)), np.asarray(noise(300, 200)))


@pytest.mark.parametrize("size", [(640, 480), (300, 900), (224, 224), (50, 40)])
def test_eval_transform_gives_uint8_square_crops(size):
    out = eval_transform(224)(gradient(*size))
    assert out.shape == (3, 224, 224) and out.dtype == torch.uint8


def test_eval_transform_is_a_centered_crop():
    out = eval_transform(64, crop_fraction=0.5)(gradient(256, 128))
    # Resize to 128 shorter side (256x128 -> unchanged), center crop 64 wide: the middle of the gradient.
    row = out[0, 32].float()
    assert 80 < row[0] < 100 and 150 < row[-1] < 175
    assert torch.equal(out, eval_transform(64, crop_fraction=0.5)(gradient(256, 128)))


@pytest.mark.parametrize("size", [(250, 180), (120, 250), (200, 200), (50, 40)])
def test_eval_box_is_the_region_the_eval_view_shows(size):
    """Ramps whose value is the pixel's column (row): the view's first and last columns (rows) hold the values of the
    box's edges, half a view pixel in, to within rounding."""
    w, h = size
    columns = to_uint8_tensor(Image.fromarray(np.arange(w, dtype=np.uint8)[None, :, None].repeat(h, 0).repeat(3, 2)))
    rows = to_uint8_tensor(Image.fromarray(np.arange(h, dtype=np.uint8)[:, None, None].repeat(w, 1).repeat(3, 2)))
    left, top, right, bottom = eval_box(w, h, 64, 0.875)
    x_step, y_step = (right - left) / 64, (bottom - top) / 64  # image pixels per view pixel
    across = eval_transform(64, 0.875)(columns)[0, 32].float()
    down = eval_transform(64, 0.875)(rows)[0, :, 32].float()
    assert across[0] == pytest.approx(left + x_step / 2 - 0.5, abs=1)
    assert across[-1] == pytest.approx(right - x_step / 2 - 0.5, abs=1)
    assert down[0] == pytest.approx(top + y_step / 2 - 0.5, abs=1)
    assert down[-1] == pytest.approx(bottom - y_step / 2 - 0.5, abs=1)


def test_resize_size():
    assert resize_size(224) == 256
    assert resize_size(64, 1.0) == 64
    with pytest.raises(ValueError):
        resize_size(64, 0)


@pytest.mark.parametrize("crop", ["random_resized", "random", "center"])
def test_train_transform_shapes_and_randomness(crop):
    torch.manual_seed(0)
    cfg = AugmentConfig(crop=crop, blur_prob=0.5, jpeg_prob=0.5)
    transform = train_transform(32, cfg)
    img = load_image(noise(120, 90))
    outs = [transform(img) for _ in range(6)]
    assert all(o.shape == (3, 32, 32) and o.dtype == torch.uint8 for o in outs)
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_train_transform_is_reproducible_from_the_torch_seed():
    transform = train_transform(32, AugmentConfig(jpeg_prob=1.0, blur_prob=1.0))
    img = gradient(100, 80)
    torch.manual_seed(5)
    a = transform(img)
    torch.manual_seed(5)
    assert torch.equal(a, transform(img))


def test_unknown_crop_is_refused():
    with pytest.raises(ValueError, match=r"unknown data\.augment\.crop 'zoom'"):
        train_transform(32, AugmentConfig(crop="zoom"))


def test_random_resized_crop_resizes_the_drawn_box_as_pillow_would(monkeypatch):
    draws = iter([0.5, 0.5, 7, 11])  # area fraction, log-ratio position, left, top
    monkeypatch.setattr(augment, "_uniform", lambda lo, hi: lo + (hi - lo) * next(draws))
    monkeypatch.setattr(augment, "_randint", lambda lo, hi: next(draws))
    img = noise(120, 90)
    out = augment.random_resized_crop(to_uint8_tensor(img), 32, (0.2, 0.6)).permute(1, 2, 0).numpy().astype(int)
    side = round((120 * 90 * 0.4) ** 0.5)  # ratio exp(0) = 1: a square of 40% of the area
    pillow = np.asarray(img.crop((7, 11, 7 + side, 11 + side)).resize((32, 32), Image.Resampling.BILINEAR))
    pillow = pillow.astype(int)
    assert np.abs(out - pillow).max() <= 1
