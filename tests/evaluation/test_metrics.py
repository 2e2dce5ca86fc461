"""The metric functions checked by hand, and the threshold calibration shared with training."""

import json

import pytest
import torch

from detective.evaluation.metrics import (
    band_metrics,
    best_balanced_threshold,
    familiarity_metrics,
    fit_temperature,
    source_metrics,
    subject_metrics,
)


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


def test_source_metrics_equal_hand_computed_values():
    probs = [0.1, 0.4, 0.2, 0.35, 0.8, 0.7]
    target = [0, 0, 0, 1, 1, 1]
    m = source_metrics(probs, target, threshold=0.5)
    # At 0.5: the real ones all real, 0.35 missed among the AI ones.
    assert (m["n"], m["n_ai"], m["real_accuracy"], m["ai_accuracy"]) == (6, 3, 1.0, pytest.approx(2 / 3))
    assert m["accuracy"] == pytest.approx(5 / 6) and m["balanced_accuracy"] == pytest.approx(5 / 6)
    assert m["auroc"] == pytest.approx(8 / 9)  # 8 of the 9 (AI, real) pairs ranked right: 0.35 < 0.4
    assert m["average_precision"] == pytest.approx((1 + 1 + 3 / 4) / 3)  # AI at ranks 1, 2 and 4
    # Every image alone in its probability bin: the ECE is the mean gap between probability and truth.
    assert m["ece"] == pytest.approx((0.1 + 0.4 + 0.2 + 0.65 + 0.2 + 0.3) / 6, abs=1e-6)
    # Balanced accuracy 5/6 is reached between 0.2 and 0.35 (every AI image found, 0.4 called AI) and between 0.4
    # and 0.7 (0.35 missed, every real one right): of the two, the one nearer 0.5.
    assert m["best_threshold"] == {"threshold": pytest.approx(0.55), "balanced_accuracy": pytest.approx(5 / 6),
                                   "optimistic": True}  # fmt: skip


def test_the_threshold_itself_counts_as_ai_as_in_predict():
    assert source_metrics([0.5, 0.5], [1, 0], threshold=0.5)["ai_accuracy"] == 1.0


def test_one_source_only_leaves_ranking_metrics_undefined_and_the_report_valid_json():
    m = source_metrics([0.1, 0.6, 0.3], [0, 0, 0], threshold=0.5)
    assert m["accuracy"] == pytest.approx(2 / 3) and m["real_accuracy"] == pytest.approx(2 / 3)
    assert m["ai_accuracy"] is m["balanced_accuracy"] is m["auroc"] is m["average_precision"] is None
    assert m["best_threshold"] is None
    json.dumps(m, allow_nan=False)


def test_familiarity_counts_the_unfamiliar_and_the_confidently_wrong_among_all_and_the_rest():
    m = familiarity_metrics([0.95, 0.05, 0.6, 0.3], [0, 0, 1, 1], [True, False, False, True], threshold=0.5)
    assert m == {
        "unfamiliar": 2,
        "coverage": 0.5,
        "accuracy_familiar": 1.0,
        "confidently_wrong": 0.25,  # 0.95 on a real photo; 0.3 on an AI image is wrong but not confident
        "confidently_wrong_familiar": 0.0,
    }
    assert familiarity_metrics([0.99], [0], [True], 0.5)["confidently_wrong_familiar"] is None


def test_band_coverage_and_accuracy_outside_the_band():
    m = band_metrics([0.45, 0.52, 0.9, 0.1], [0, 1, 1, 1], [True, True, False, False], threshold=0.5, band=0.1)
    assert m == {"band": 0.1, "uncertain": 2, "coverage": 0.5, "accuracy_outside": 0.5}
    assert band_metrics([0.5], [1], [True], 0.5, 0.1)["accuracy_outside"] is None


def test_subject_metrics_equal_hand_computed_values():
    m = subject_metrics(target=[0, 0, 1, 1, 1], predicted=[0, 1, 1, 1, 0], classes=["cat", "dog", "owl"])
    assert m["confusion"] == [[1, 1, 0], [1, 2, 0], [0, 0, 0]]
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["per_class"]["cat"] == {"precision": 0.5, "recall": 0.5, "support": 2}
    assert m["per_class"]["dog"] == {"precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3), "support": 3}
    assert m["per_class"]["owl"] == {"precision": None, "recall": None, "support": 0}  # never there, never said
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)  # over the classes present or predicted


def test_the_fitted_temperature_is_the_one_that_made_the_labels_and_never_sharpens():
    generator = torch.Generator().manual_seed(0)
    honest = torch.randn(20000, generator=generator) * 3  # logits whose sigmoid is the chance of AI
    target = torch.bernoulli(torch.sigmoid(honest), generator=generator)
    assert fit_temperature(honest * 2.5, target) == pytest.approx(2.5, rel=0.05)  # overconfident by 2.5
    assert fit_temperature(honest * 0.5, target) == 1.0  # underconfident: left alone, not sharpened
    assert fit_temperature(torch.tensor([-3.0, -1.0, 1.0, 3.0]), torch.tensor([0, 0, 1, 1])) == 1.0  # separable
    assert fit_temperature(torch.tensor([1.0, 2.0]), torch.tensor([1, 1])) == 1.0  # one source
    assert fit_temperature(torch.tensor([]), torch.tensor([])) == 1.0
