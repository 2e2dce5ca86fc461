import numpy as np
import pytest
import torch
from PIL import Image

from detective.data.augment import AugmentConfig, train_transform
from detective.data.transforms import eval_transform, resize_size


def gradient(w: int, h: int) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :, None].repeat(h, 0).repeat(3, 2)
    return Image.fromarray(x)


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
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8))
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
