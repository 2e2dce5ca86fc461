"""The threshold calibration and the calibration error shared by training and evaluation."""

import pytest
import torch

from detective.evaluation.metrics import best_balanced_threshold


def quadratic_threshold(probs: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """The first implementation, a (candidates x images) matrix: the reference the sorted one must equal."""
    target = target.long()
    if probs.numel() == 0 or target.min() == target.max():
        return 0.5, float("nan")
    values = torch.unique(probs.float())
    candidates = torch.cat([values[:1] - 1e-6, (values[1:] + values[:-1]) / 2, values[-1:] + 1e-6])
    decide = probs.float()[None, :] >= candidates[:, None]
    pos, neg = target == 1, target == 0
    balanced = ((decide & pos).sum(1) / pos.sum() + (~decide & neg).sum(1) / neg.sum()) / 2
    tied = torch.nonzero(balanced == balanced.max()).squeeze(1)
    best = int(tied[torch.argmin((candidates[tied] - 0.5).abs())])
    return float(candidates[best].clamp(0, 1)), float(balanced[best])


def test_best_balanced_threshold_separates_the_classes():
    probs = torch.tensor([0.10, 0.20, 0.30, 0.35, 0.40, 0.90])
    target = torch.tensor([0, 0, 0, 1, 1, 1])
    threshold, balanced = best_balanced_threshold(probs, target)
    assert 0.30 < threshold <= 0.35 and balanced == 1.0
    # One class only: nothing to calibrate, the threshold stays at 0.5.
    assert best_balanced_threshold(probs, torch.ones(6, dtype=torch.long))[0] == 0.5


def test_of_thresholds_tied_for_the_best_the_one_nearest_one_half_is_chosen():
    probs = torch.tensor([0.05, 0.10, 0.60, 0.20, 0.70, 0.90])  # real, real, real, AI, AI, AI
    target = torch.tensor([0, 0, 0, 1, 1, 1])
    threshold, balanced = best_balanced_threshold(probs, target)  # 0.15 and 0.65 each get one image wrong
    assert threshold == pytest.approx(0.65) and balanced == pytest.approx(5 / 6)


def test_imbalanced_scores_get_a_threshold_far_from_one_half():
    probs = torch.tensor([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08])
    target = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    threshold, balanced = best_balanced_threshold(probs, target)
    assert 0.04 < threshold < 0.05 and balanced == 1.0


@pytest.mark.parametrize("seed", range(40))
def test_sorted_calibration_equals_the_quadratic_one_with_ties(seed):
    generator = torch.Generator().manual_seed(seed)
    n = int(torch.randint(2, 300, (1,), generator=generator))
    levels = int(torch.randint(2, 12, (1,), generator=generator))  # few distinct values: many tied probabilities
    probs = torch.randint(0, levels + 1, (n,), generator=generator).float() / levels
    if seed % 2:  # and continuous scores, some repeated
        probs = torch.cat([torch.rand(n, generator=generator), probs[: n // 3]])
    target = torch.randint(0, 2, (len(probs),), generator=generator)
    target[:2] = torch.tensor([0, 1])  # both classes present
    assert best_balanced_threshold(probs, target) == quadratic_threshold(probs, target)


def test_one_class_or_no_images_keep_one_half():
    assert best_balanced_threshold(torch.tensor([]), torch.tensor([], dtype=torch.long))[0] == 0.5
    assert best_balanced_threshold(torch.tensor([0.2, 0.9]), torch.tensor([0, 0]))[0] == 0.5
