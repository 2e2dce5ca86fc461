"""How an image's crops become its answer: the mean of its crops' source logits, settled early where its first
crops already agree. (Its AI probability is sigmoid(mean / temperature), the temperature calibrated in training.)

An image's evaluation grid holds up to `source_crops` crops, ordered coarse to fine (`geometry.crop_grid`), so its
first few are spread over the whole image. Where the mean logit of those first `first` crops lies at least
`margin` logits from the threshold's, the rest of the grid would rarely move the answer across it, and the image is
answered from them alone; the others are judged on the whole grid. Prediction then runs the network on the first
crops of every image and on the rest of the unsettled ones only (`judged`: `Predictor` and the ONNX predictor); the
test step of training judges every crop and applies the same rule (`answer`), so all three give the same answers.

Numpy only, so that the torch-free ONNX path shares it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Settling:
    """`first`: the crops of each image judged first (0: every crop, always); `margin`: how far from the threshold,
    in logits, their mean must lie to answer from them alone."""

    first: int = 0
    margin: float = 0.0

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any]) -> Settling:
        """A checkpoint's (or an exported model's) rule; one from before the rule judges every crop."""
        return cls(int(hparams.get("settle_crops") or 0), float(hparams.get("settle_margin") or 0.0))

    def __post_init__(self) -> None:
        if self.first < 0 or self.margin < 0:
            raise ValueError(f"settle_crops and settle_margin must be at least 0, got {self.first}, {self.margin}")

    def first_crops(self, owner: np.ndarray) -> np.ndarray:
        """Which crops [N] are among their image's first (all of them when the rule is off); `owner[n]` is crop n's
        image, the crops image by image."""
        if not self.first:
            return np.ones(len(owner), dtype=bool)
        starts = np.searchsorted(owner, owner)  # each crop's image's first crop (owner is sorted)
        return np.arange(len(owner)) - starts < self.first

    def settled(
        self,
        first_logits: np.ndarray,
        first_owner: np.ndarray,
        counts: np.ndarray,
        threshold: float,
        temperature: float = 1.0,
    ) -> np.ndarray:
        """Which images [B] are answered from their first crops: more crops than that, and the mean of the first
        crops' logits (`first_logits`, owned by `first_owner`) at least `margin` from the logit at which the AI
        probability, sigmoid(logit / `temperature`), reaches the `threshold`."""
        if not self.first:
            return np.zeros(len(counts), dtype=bool)
        cut = temperature * logit(threshold)
        distance = np.abs(mean_by_owner(first_logits, first_owner, len(counts)) - cut)
        return (counts > self.first) & (distance >= self.margin)

    def image_means(self, values: np.ndarray, owner: np.ndarray, settled: np.ndarray) -> np.ndarray:
        """Per image [B]: the mean of `values` [N] (its crops' logits, or novelty) over its first crops where it is
        settled, over all of them elsewhere. The values of the crops a settled image skips are not read."""
        used = ~settled[owner] | self.first_crops(owner)
        return mean_by_owner(values[used], owner[used], len(settled))

    def judged(
        self,
        judge: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]],
        owner: np.ndarray,
        threshold: float,
        temperature: float = 1.0,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per image, its source logit and novelty (or None) under the rule, judging the first crops of every image
        and then the rest of the unsettled images' only. `judge(chosen)` runs the network on the crops a mask [N]
        chooses: their logits and novelty (or None), float32."""
        logits = np.full(len(owner), np.nan, dtype=np.float32)  # the crops a settled image skips stay unjudged
        novelty = logits.copy()
        first = self.first_crops(owner)
        logits[first], first_novelty = judge(first)
        if first_novelty is not None:
            novelty[first] = first_novelty
        settled = self.settled(logits[first], owner[first], np.bincount(owner), threshold, temperature)
        rest = ~first & ~settled[owner]
        if rest.any():
            logits[rest], rest_novelty = judge(rest)
            if rest_novelty is not None:
                novelty[rest] = rest_novelty
        image_novelty = None if first_novelty is None else self.image_means(novelty, owner, settled)
        return self.image_means(logits, owner, settled), image_novelty

    def answer(
        self,
        logits: np.ndarray,
        owner: np.ndarray,
        threshold: float,
        novelty: np.ndarray | None = None,
        temperature: float = 1.0,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Every crop judged: per image, its source logit and novelty (or None) under the rule, by `judged` itself
        reading the crops it asks for from what was judged."""
        return self.judged(
            lambda chosen: (logits[chosen], None if novelty is None else novelty[chosen]), owner, threshold, temperature
        )


EVERY_CROP = Settling()  # the rule off: each image's answer is the mean of all its crops'


def mean_by_owner(values: np.ndarray, owner: np.ndarray, count: int | None = None) -> np.ndarray:
    """The mean of `values` per owner [count], in their dtype, as `net.mean_by_owner` computes it."""
    count = int(owner.max()) + 1 if count is None else count
    sums = np.zeros(count, dtype=values.dtype)
    np.add.at(sums, owner, values)
    return sums / np.bincount(owner, minlength=count).astype(values.dtype)


def logit(p: float) -> float:
    """The logit of a probability; +-inf at 1 and 0 (every image then lies on one side of the threshold)."""
    return math.inf if p >= 1 else -math.inf if p <= 0 else math.log(p / (1 - p))
