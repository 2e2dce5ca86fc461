import numpy as np
import pytest
import torch

from detective.data.geometry import crop_grid, spread_order
from detective.predict.predictor import Predictor
from detective.predict.settling import EVERY_CROP, Settling, logit

# Three images: 5 crops whose first two agree far above the threshold, 5 whose first two sit near it, and 2 crops
# (no more than the first two: nothing to skip).
LOGITS = np.array([6.0, 5.0, -9.0, -9.0, -9.0, 0.5, -0.5, 4.0, 4.0, 4.0, 7.0, 7.0], dtype=np.float32)
OWNER = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2])


def test_an_image_whose_first_crops_agree_far_from_the_threshold_is_answered_from_them_alone():
    logits, _ = Settling(first=2, margin=2.0).answer(LOGITS, OWNER, threshold=0.5)
    assert logits.tolist() == pytest.approx([5.5, 2.4, 7.0])  # first two; all five; both of two


def test_the_margin_is_measured_from_the_threshold_and_the_rule_off_is_the_plain_mean():
    plain = [(6 + 5 - 27) / 5, 2.4, 7.0]
    assert EVERY_CROP.answer(LOGITS, OWNER, 0.5)[0].tolist() == pytest.approx(plain)
    # A threshold at p = sigmoid(4.5) puts image 0's first crops (mean 5.5) within the margin, so all five count,
    # and image 1's (mean 0) beyond it.
    far = 1 / (1 + np.exp(-4.5))
    assert Settling(2, 2.0).answer(LOGITS, OWNER, far)[0].tolist() == pytest.approx([plain[0], 0.0, 7.0])
    assert logit(0.0) == -np.inf and logit(1.0) == np.inf and logit(0.5) == 0.0


def test_with_a_temperature_the_margin_is_measured_from_the_logit_where_the_probability_reaches_the_threshold():
    # p = sigmoid(logit / 2) reaches sigmoid(1.5) at logit 3: image 0's first crops (mean 5.5) lie 2.5 beyond it,
    # image 1's (mean 0) 3 below it, so both settle; at sigmoid(2) the cut is 4 and image 0's lie within the margin.
    plain = [(6 + 5 - 27) / 5, 2.4, 7.0]
    settling = Settling(2, 2.0)
    assert settling.answer(LOGITS, OWNER, 1 / (1 + np.exp(-1.5)), temperature=2.0)[0].tolist() == pytest.approx(
        [5.5, 0.0, 7.0]
    )
    assert settling.answer(LOGITS, OWNER, 1 / (1 + np.exp(-2.0)), temperature=2.0)[0].tolist() == pytest.approx(
        [plain[0], 0.0, 7.0]
    )


def test_novelty_follows_the_crops_that_answered():
    novelty = np.arange(12, dtype=np.float32)
    _, image_novelty = Settling(2, 2.0).answer(LOGITS, OWNER, 0.5, novelty)
    assert image_novelty.tolist() == pytest.approx([0.5, 7.0, 10.5])


def test_negative_settings_are_refused():
    with pytest.raises(ValueError, match="settle_crops and settle_margin must be at least 0"):
        Settling(-1, 2.0)


def test_checkpoints_from_before_the_rule_judge_every_crop():
    assert Settling.from_hparams({}) == EVERY_CROP
    assert Settling.from_hparams({"settle_crops": 4, "settle_margin": 2.0}) == Settling(4, 2.0)


@pytest.mark.parametrize("cols, rows", [(1, 1), (2, 1), (5, 3), (4, 4), (3, 5)])
def test_the_grid_starts_spread_over_the_whole_image(cols, rows):
    order = spread_order(cols, rows)
    assert sorted(order) == list(range(cols * rows))
    if cols * rows >= 5:  # the first four reach both halves of the image across and down
        first = [(i % cols, i // cols) for i in order[:4]]
        assert any(c < (cols - 1) / 2 for c, _ in first) and any(c > (cols - 1) / 2 for c, _ in first)
        assert any(r < (rows - 1) / 2 for _, r in first) and any(r > (rows - 1) / 2 for _, r in first)


def test_the_crop_grid_keeps_its_cells_in_the_spread_order():
    grid = crop_grid(1280, 720, 224, 16)
    assert len(grid) == len(set(grid)) == 15
    assert grid[0] == (528, 248)  # the centre cell of the 5 x 3 grid comes first
    assert sorted(grid) == sorted((x, y) for x in (0, 264, 528, 792, 1056) for y in (0, 248, 496))


class _CountingNet(torch.nn.Module):
    """Judges a crop by its first pixel (as a logit), counting the crops it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.judged_crops = 0

    def judged(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.judged_crops += len(crops)
        first = crops[:, 0, 0, 0].float()
        return first, first.abs()


def test_the_predictor_judges_the_rest_of_the_unsettled_images_only_and_answers_as_the_rule_does():
    net = _CountingNet()
    predictor = Predictor(net, [], views=None, threshold=0.5, device="cpu", settling=Settling(2, 2.0))
    crops = torch.zeros(len(LOGITS), 3, 4, 4)
    crops[:, 0, 0, 0] = torch.from_numpy(LOGITS)
    logits, novelty = predictor.judged_by_image(crops, OWNER)
    assert net.judged_crops == 2 + 5 + 2  # image 0 settled after its first two
    want_logits, want_novelty = Settling(2, 2.0).answer(LOGITS, OWNER, 0.5, np.abs(LOGITS))
    assert logits.tolist() == want_logits.tolist() and novelty.tolist() == want_novelty.tolist()
