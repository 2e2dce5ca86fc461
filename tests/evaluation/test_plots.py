"""The PNG pictures: real images of a plausible size, written whole, from plain arrays."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detective.evaluation import plots
from detective.evaluation.metrics import expected_calibration_error
from tests.helpers import write_image


def read_png(path: Path, min_side: int = 300) -> Image.Image:
    with Image.open(path) as im:
        im.load()
    assert im.format == "PNG" and min(im.size) >= min_side, (im.format, im.size)
    assert np.asarray(im.convert("L")).std() > 5  # something is drawn, not a blank canvas
    assert not list(path.parent.glob(".*.partial"))  # written whole, renamed into place
    return im


@pytest.fixture
def scores() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    target = rng.integers(0, 2, 200)
    probs = np.clip(0.3 * target + rng.random(200) * 0.7, 0, 1)
    return probs, target


def test_confusion_matrix(tmp_path):
    path = plots.confusion_matrix_plot([[5, 1, 0], [2, 7, 1], [0, 0, 4]], ["cat", "dog", "owl"], tmp_path / "c.png")
    read_png(path)


def test_source_curves_need_both_sources(tmp_path, scores):
    probs, target = scores
    im = read_png(plots.source_curves_plot(probs, target, 0.5, tmp_path / "curves.png"))
    assert im.width > 1.5 * im.height  # ROC and precision-recall side by side
    with pytest.raises(ValueError, match="both real and AI"):
        plots.source_curves_plot(probs, np.zeros_like(target), 0.5, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_reliability_diagram(tmp_path, scores):
    read_png(plots.reliability_plot(*scores, tmp_path / "deep" / "r.png"))


def test_reliability_bins_give_torchmetrics_calibration_error(scores):
    probs, target = scores
    probs = np.concatenate([probs, [0.0, 0.1, 0.3, 0.7, 1.0, 1.0]])  # bin edges and probability 1.0
    target = np.concatenate([target, [0, 1, 0, 1, 1, 0]])
    bins = plots.reliability_bins(probs, target, 10)
    assert sum(b["count"] for b in bins) == len(probs) and bins[-1]["count"] == 2  # 1.0 has a bin of its own
    gap = sum(b["count"] * abs(b["mean_probability"] - b["ai_fraction"]) for b in bins if b["count"]) / len(probs)
    assert gap == pytest.approx(expected_calibration_error(probs, target), abs=1e-6)  # the title's ECE


def test_image_grid_draws_every_image_and_a_grey_tile_for_an_unreadable_one(tmp_path):
    paths = [write_image(tmp_path / f"img{i}.png", (90, 60), seed=i) for i in range(5)]
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    grid = plots.image_grid_plot([*paths, broken], [f"image {i}" for i in range(6)], tmp_path / "grid.png", "title")
    im = read_png(grid)
    assert im.height > im.width / 2  # two rows of four columns
