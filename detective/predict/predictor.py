"""`Predictor`: a trained checkpoint -> typed predictions for paths, PIL images or bytes.

The image goes through `eval_views`, the very function validation and testing use, with the image size, crops
and source view saved in the checkpoint, so training and prediction cannot disagree.
Decoding runs in a thread pool ahead of the forward pass (Pillow and torch both release the GIL),
so a long list costs about what the model costs.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import BinaryIO

import torch
from PIL import Image

from detective.data.dataset import collate_views
from detective.data.images import ImageDecodeError
from detective.data.transforms import load_image
from detective.data.views import Views, eval_views
from detective.model.net import DetectiveNet
from detective.predict.checkpoint import read_checkpoint
from detective.predict.results import Failure, Prediction, Result

ImageInput = str | os.PathLike | bytes | BinaryIO | Image.Image


def pick_device(name: str = "auto") -> torch.device:
    """`auto` takes CUDA, then Apple's MPS, then the CPU; a named device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is visible here; use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("--device mps: Apple's MPS is not available here; use --device cpu or auto")
    if name not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
    return torch.device(name)


def check_threshold(threshold: float) -> float:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    return float(threshold)


def default_workers() -> int:
    """Decoding threads: enough to keep the model fed, few enough to leave it its cores."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


class Predictor:
    """Holds a trained net and the settings saved with it; `predict` takes any mix of image inputs."""

    def __init__(
        self,
        net: torch.nn.Module,
        subjects: Sequence[str],
        views: Views,
        threshold: float,
        device: str = "auto",
        channels_last: bool = True,
        uncertain: float = 0.0,
    ) -> None:
        """`uncertain`: AI probabilities less than this far from the threshold are reported as uncertain."""
        self.device = pick_device(device)
        if isinstance(net, DetectiveNet):  # the layout training used by default: ~1.7x faster on CPU
            net.set_speed(channels_last=channels_last, frozen_backbone="eager")
        self.net = net.to(self.device).eval()
        self.subjects = list(subjects)
        self.threshold = check_threshold(threshold)
        self.views = views
        self.uncertain = check_threshold(uncertain)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "auto",
        threshold: float | None = None,
        lite: bool = True,
        uncertain: float = 0.0,
    ) -> Predictor:
        """Everything comes from the checkpoint; `threshold` overrides the calibrated one.

        `lite=False` builds the net through `DetectiveNet` (and torchvision) instead of its torch-only twin;
        the numbers are the same, only start-up is slower.
        """
        info = read_checkpoint(path)
        hp = info.hparams
        return cls(
            info.build_net(lite=lite),
            info.subjects,
            eval_views(
                int(hp["image_size"]),
                float(hp["crop_fraction"]),
                # Checkpoints from before the native view judged the source on the downscaled image.
                hp.get("source_view", "resized"),
                int(hp.get("source_crop", hp["image_size"])),
                int(hp.get("source_crops", 1)),
                subject_head=len(info.subjects) >= 2,
            ),
            float(hp["threshold"] if threshold is None else threshold),
            device,
            uncertain=uncertain,
        )

    def load(self, image: ImageInput) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Decode one input and make the views the net takes: (downscaled image, native crops), either may be None."""
        return self.views(load_image(image, self.views.decode_side))

    def _load_or_fail(self, image: ImageInput) -> tuple[torch.Tensor | None, torch.Tensor | None] | Failure:
        try:
            return self.load(image)
        except ImageDecodeError as err:
            return Failure(_name(image), str(err))

    @torch.inference_mode()
    def predict_views(
        self, views: Sequence[tuple[torch.Tensor | None, torch.Tensor | None]], top_k: int = 3
    ) -> list[tuple[list[tuple[str, float]], float]]:
        """Views of several images -> per image: subjects by probability (top k; empty without a subject head)
        and the AI probability."""
        images, crops, owner = collate_views(*zip(*views, strict=True))
        device = self.device
        subject_logits, source_logits = self.net(
            *(t.to(device) if t is not None else None for t in (images, crops, owner))
        )
        ai = torch.sigmoid(source_logits.float()).cpu().tolist()
        if subject_logits is None:
            return [([], p) for p in ai]
        probs = torch.softmax(subject_logits.float(), dim=1).cpu()
        k = max(1, min(top_k, len(self.subjects)))
        values, indices = probs.topk(k, dim=1)
        return [
            ([(self.subjects[i], float(v)) for v, i in zip(vs, ix, strict=True)], float(p))
            for vs, ix, p in zip(values.tolist(), indices.tolist(), ai, strict=True)
        ]

    def result(self, path: str | None, ranked: list[tuple[str, float]], ai_probability: float) -> Prediction:
        subject, confidence = ranked[0] if ranked else (None, None)
        is_ai, unsure = ai_probability >= self.threshold, abs(ai_probability - self.threshold) < self.uncertain
        return Prediction(path, subject, confidence, ranked, ai_probability, is_ai, self.threshold, unsure)

    def iter_predict(
        self, images: Iterable[ImageInput], batch_size: int = 32, top_k: int = 3, workers: int | None = None
    ) -> Iterator[Result]:
        """Yield one result per input, in order, as each batch finishes; unreadable inputs become `Failure`s.

        `workers` decoding threads (default: `default_workers()`; 0 decodes inline) stay up to two batches ahead.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        decoded = self._decoded(images, default_workers() if workers is None else workers, 2 * batch_size)
        while chunk := list(islice(decoded, batch_size)):
            good = [(i, v) for i, (_, v) in enumerate(chunk) if not isinstance(v, Failure)]
            ranked = self.predict_views([v for _, v in good], top_k) if good else []
            scores = dict(zip((i for i, _ in good), ranked, strict=True))
            for i, (image, loaded) in enumerate(chunk):
                yield self.result(_name(image), *scores[i]) if i in scores else loaded  # type: ignore[misc]

    def predict(
        self, images: Iterable[ImageInput], batch_size: int = 32, top_k: int = 3, workers: int | None = None
    ) -> list[Result]:
        """Predict each input in order; an input that cannot be read becomes a `Failure`, not an exception."""
        return list(self.iter_predict(images, batch_size, top_k, workers))

    def _decoded(
        self, images: Iterable[ImageInput], workers: int, ahead: int
    ) -> Iterator[tuple[ImageInput, tuple[torch.Tensor | None, torch.Tensor | None] | Failure]]:
        """(input, tensor or failure) in order, decoded by `workers` threads at most `ahead` inputs ahead."""
        if workers < 1:
            yield from ((image, self._load_or_fail(image)) for image in images)
            return
        pending: deque[tuple[ImageInput, Future]] = deque()
        with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
            try:
                for image in images:
                    pending.append((image, pool.submit(self._load_or_fail, image)))
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
