"""Perturbation specs of `--perturb`: parsed strictly, applied to a copy in memory."""

import numpy as np
import pytest
from PIL import Image

from detective.predict.perturb import Perturbation, parse_perturbation, parse_perturbations


def test_specs_expand_to_one_perturbation_per_value_in_order_without_repeats():
    found = parse_perturbations(["jpeg=90,70,50", "resize=0.5", "blur=1.0", "JPEG=90"])
    assert [str(p) for p in found] == ["jpeg=90", "jpeg=70", "jpeg=50", "resize=0.5", "blur=1"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("jpeg=0", "not a valid jpeg value (JPEG quality, a whole number from 1 to 100)"),
        ("jpeg=85.5", "not a valid jpeg value"),
        ("resize=0", "not a valid resize value"),
        ("resize=inf", "not a valid resize value"),
        ("blur=nan", "not a valid blur value"),
        ("blur=-1", "not a valid blur value"),
        ("jpeg=90,x", "'x' is not a valid jpeg value"),
        ("sharpen=1", "unknown perturbation 'sharpen=1': use jpeg=V[,V...]"),
        ("jpeg", "unknown perturbation 'jpeg'"),
    ],
)
def test_bad_specs_name_the_spec_and_what_is_allowed(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_perturbation(spec)


@pytest.fixture
def image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))


def test_each_perturbation_changes_a_copy_and_leaves_the_input_alone(image):
    before = np.asarray(image).copy()
    resized = Perturbation("resize", 0.5).apply(image)
    assert resized.size == (40, 30)
    for kind, value in (("jpeg", 50), ("blur", 1.0)):
        out = Perturbation(kind, value).apply(image)
        assert out.size == image.size and out.mode == "RGB"
        assert np.abs(np.asarray(out, dtype=int) - before).mean() > 5  # noise does not survive either
    assert np.array_equal(np.asarray(image), before)


def test_jpeg_perturbation_compresses_at_the_quality_asked():
    ramp = np.add.outer(np.arange(64), np.arange(96)).astype(np.uint8)
    image = Image.fromarray(np.stack([ramp, ramp[::-1], 255 - ramp], axis=-1))
    low = np.asarray(Perturbation("jpeg", 10).apply(image), dtype=int)
    high = np.asarray(Perturbation("jpeg", 95).apply(image), dtype=int)
    original = np.asarray(image, dtype=int)
    assert np.abs(low - original).mean() > 2 * np.abs(high - original).mean()
