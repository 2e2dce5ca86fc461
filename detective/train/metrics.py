"""Metric collections per stage (the threshold calibration is in `detective.evaluation.metrics`)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    MulticlassAccuracy,
    MulticlassF1Score,
)
from torchmetrics.utilities.data import dim_zero_cat


class GroupAccuracy(Metric):
    """Accuracy of binary decisions within each group (here: source accuracy per subject)."""

    full_state_update = False

    def __init__(self, num_groups: int) -> None:
        super().__init__()
        self.add_state("correct", torch.zeros(num_groups), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(num_groups), dist_reduce_fx="sum")

    def update(self, decisions: Tensor, target: Tensor, groups: Tensor) -> None:
        hits = (decisions.long() == target.long()).float()
        self.correct.index_add_(0, groups, hits)
        self.total.index_add_(0, groups, torch.ones_like(hits))

    def compute(self) -> Tensor:
        return self.correct / self.total.clamp(min=1)


class Collected(Metric):
    """Keeps every (value, target) pair of an epoch (an image's source logit, or its novelty), gathered across
    processes, for calibration."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("values", [], dist_reduce_fx="cat")
        self.add_state("target", [], dist_reduce_fx="cat")

    def update(self, values: Tensor, target: Tensor) -> None:
        self.values.append(values.detach().float())
        self.target.append(target.detach().long())

    def compute(self) -> tuple[Tensor, Tensor]:
        return dim_zero_cat(self.values), dim_zero_cat(self.target)


def subject_metric_collection(num_subjects: int) -> MetricCollection:
    return MetricCollection(
        {
            "subject_acc": MulticlassAccuracy(num_subjects, average="micro"),
            "subject_f1": MulticlassF1Score(num_subjects, average="macro"),
        }
    )


def source_metric_collection() -> MetricCollection:
    """Accuracy of the thresholded decisions (passed as 0/1); AUROC and AP of the probabilities."""
    return MetricCollection({"source_acc": BinaryAccuracy()})
