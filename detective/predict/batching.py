"""What every predictor does around its net: decode inputs on threads ahead of it, batch them, and give back one
result per input, in order, an unreadable input becoming a `Failure` in its place.

Torch-free, so that the ONNX predictor shares it: `Predictor` (PyTorch) and `OnnxPredictor` (onnxruntime) differ
only in how one image is prepared for the net (`load`) and how a batch of prepared images is scored (`score`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from detective.constants import CPU_PREDICT_BATCH, PREDICT_KEPT_MEMORY
from detective.data.images import ImageDecodeError
from detective.memory import reusing_freed_memory, trim_freed_memory
from detective.predict.results import Failure, Prediction, Result

ImageInput = str | os.PathLike | bytes | BinaryIO | Image.Image
# Subjects by probability (the top k), the AI probability, and the novelty (None where the net gives none).
Scores = tuple[list[tuple[str, float]], float, float | None]


def check_threshold(threshold: float) -> float:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    return float(threshold)


def default_workers() -> int:
    """Decoding threads: enough to keep the model fed, few enough to leave it its cores."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


class BatchPredictor(ABC):
    """The settings saved with a trained net, and the loop from any mix of image inputs to results."""

    batch_size = CPU_PREDICT_BATCH  # images per batch where a call names none (a predictor on a GPU sets its own)

    def __init__(
        self,
        subjects: Sequence[str],
        threshold: float,
        uncertain: float = 0.0,
        novelty_limit: float | None = None,
        temperature: float = 1.0,
    ) -> None:
        """`subjects`: none without a subject head; `uncertain`: AI probabilities less than this far from the
        threshold are reported as uncertain; `novelty_limit`: images whose novelty exceeds it are reported as
        unfamiliar (None: the checkpoint cannot tell); `temperature`: an image's AI probability is
        sigmoid(source logit / temperature), as training calibrated it."""
        self.subjects = list(subjects)
        self.threshold = check_threshold(threshold)
        self.temperature = float(temperature)
        self.uncertain = check_threshold(uncertain)
        self.novelty_limit = novelty_limit

    @abstractmethod
    def load(self, image: ImageInput) -> Any:
        """Decode and prepare one input for the net; raises `ImageDecodeError` for an unreadable one."""

    @abstractmethod
    def score(self, loaded: Sequence[Any], top_k: int) -> list[Scores]:
        """Prepared inputs (what `load` gives) -> per input: the top `top_k` subjects (none without a subject head),
        the AI probability and the novelty (or None)."""

    def ranked(
        self,
        subject_probabilities: np.ndarray | None,
        ai: Sequence[float],
        top_k: int,
        novelty: Sequence[float] | None = None,
    ) -> list[Scores]:
        """Per image: its `top_k` subjects by probability (highest first; ties in the subjects' order), its AI
        probability and novelty. `subject_probabilities` [B, S], None without a subject head."""
        novelty = [None] * len(ai) if novelty is None else [float(n) for n in novelty]
        if subject_probabilities is None:
            return [([], float(p), n) for p, n in zip(ai, novelty, strict=True)]
        k = max(1, min(top_k, len(self.subjects)))
        order = np.argsort(-subject_probabilities, axis=1, kind="stable")[:, :k]
        return [
            ([(self.subjects[i], float(row[i])) for i in ix], float(p), n)
            for row, ix, p, n in zip(subject_probabilities, order, ai, novelty, strict=True)
        ]

    def result(
        self, path: str | None, ranked: list[tuple[str, float]], ai_probability: float, novelty: float | None
    ) -> Prediction:
        subject, confidence = ranked[0] if ranked else (None, None)
        is_ai, unsure = ai_probability >= self.threshold, abs(ai_probability - self.threshold) < self.uncertain
        limit = self.novelty_limit
        unfamiliar = None if novelty is None or limit is None else novelty > limit
        return Prediction(
            path, subject, confidence, ranked, ai_probability, is_ai, self.threshold, unsure, novelty, unfamiliar
        )

    def iter_predict(
        self, images: Iterable[ImageInput], batch_size: int | None = None, top_k: int = 3, workers: int | None = None
    ) -> Iterator[Result]:
        """Yield one result per input, in order, as each batch finishes; unreadable inputs become `Failure`s.

        `workers` decoding threads (default: `default_workers()`; 0 decodes inline) stay up to two batches ahead;
        `batch_size` defaults to the predictor's.
        """
        batch_size = self.batch_size if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        decoded = self._decoded(images, default_workers() if workers is None else workers, 2 * batch_size)
        with reusing_freed_memory(limit=PREDICT_KEPT_MEMORY):
            while chunk := list(islice(decoded, batch_size)):
                good = [(i, loaded) for i, (_, loaded) in enumerate(chunk) if not isinstance(loaded, Failure)]
                ranked = self.score([loaded for _, loaded in good], top_k) if good else []
                scores = dict(zip((i for i, _ in good), ranked, strict=True))
                trim_freed_memory()  # beyond the memory kept, photos of many sizes would grow the heap
                for i, (image, loaded) in enumerate(chunk):
                    yield self.result(_name(image), *scores[i]) if i in scores else loaded

    def predict(
        self, images: Iterable[ImageInput], batch_size: int | None = None, top_k: int = 3, workers: int | None = None
    ) -> list[Result]:
        """Predict each input in order; an input that cannot be read becomes a `Failure`, not an exception."""
        return list(self.iter_predict(images, batch_size, top_k, workers))

    def load_or_fail(self, image: ImageInput) -> Any:
        """`load`, an unreadable input becoming its `Failure`."""
        try:
            return self.load(image)
        except ImageDecodeError as err:
            return Failure(_name(image), str(err))

    def _decoded(self, images: Iterable[ImageInput], workers: int, ahead: int) -> Iterator[tuple[ImageInput, Any]]:
        """(input, prepared input or failure) in order, decoded by `workers` threads at most `ahead` inputs ahead."""
        if workers < 1:
            yield from ((image, self.load_or_fail(image)) for image in images)
            return
        pending: deque[tuple[ImageInput, Future]] = deque()
        with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
            try:
                for image in images:
                    pending.append((image, pool.submit(self.load_or_fail, image)))
                    if len(pending) > ahead:
                        image, future = pending.popleft()
                        yield image, future.result()
                while pending:
                    image, future = pending.popleft()
                    yield image, future.result()
            finally:  # a consumer that stops early must not wait for decodes nobody will read
                for _, future in pending:
                    future.cancel()


def _name(image: ImageInput) -> str | None:
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
