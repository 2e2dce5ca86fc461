"""`Predictor`: a trained checkpoint -> typed predictions for paths, PIL images or bytes.

The image goes through `eval_views`, the very function validation and testing use, with the image size, crops
and source view saved in the checkpoint, so training and prediction cannot disagree.
Decoding runs in a thread pool ahead of the forward pass (`batching`; Pillow and torch both release
the GIL), so a long list costs about what the model costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from detective.constants import GPU_PREDICT_BATCH
from detective.data.dataset import collate_views
from detective.data.geometry import ViewSettings
from detective.data.transforms import load_image
from detective.data.views import Views, eval_views
from detective.model.net import DetectiveNet
from detective.predict.batching import BatchPredictor, ImageInput, Scores, check_threshold, default_workers
from detective.predict.checkpoint import read_checkpoint
from detective.predict.results import Failure, Prediction, Result
from detective.predict.settling import EVERY_CROP, Settling

# Results, input types and the batching helpers live in torch-free modules shared with the ONNX predictor; still
# importable from here.
__all__ = [
    "Failure",
    "ImageInput",
    "Prediction",
    "Predictor",
    "Result",
    "check_threshold",
    "default_workers",
    "pick_device",
]
TensorViews = tuple[torch.Tensor | None, torch.Tensor | None]
CollatedViews = tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]  # images, crops, owner


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


class Predictor(BatchPredictor):
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
        novelty_limit: float | None = None,
        settling: Settling = EVERY_CROP,
        temperature: float = 1.0,
    ) -> None:
        """`uncertain`, `novelty_limit`, `temperature`: as `BatchPredictor` takes them; `settling`: when an image's
        first crops answer for it (off by default: every crop)."""
        super().__init__(subjects, threshold, uncertain, novelty_limit, temperature)
        self.settling = settling
        self.device = pick_device(device)
        if self.device.type != "cpu":
            self.batch_size = GPU_PREDICT_BATCH
        if isinstance(net, DetectiveNet):  # the layout training used by default: ~1.7x faster on CPU
            net.set_speed(channels_last=channels_last)
        self.net = net.to(self.device).eval()
        self.views = views

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
        return cls(
            info.build_net(lite=lite),
            info.subjects,
            eval_views(**asdict(ViewSettings.from_hparams(info.hparams))),
            float(info.hparams["threshold"] if threshold is None else threshold),
            device,
            uncertain=uncertain,
            novelty_limit=info.hparams.get("novelty_limit"),
            settling=Settling.from_hparams(info.hparams),
            temperature=info.hparams["temperature"],
        )

    def load(self, image: ImageInput) -> TensorViews:
        """Decode one input and make the views the net takes: (downscaled image, native crops), either may be None."""
        return self.views(load_image(image, self.views.decode_side))

    def score(self, loaded: Sequence[TensorViews], top_k: int) -> list[Scores]:
        return self.predict_views(loaded, top_k)

    def predict_views(self, views: Sequence[TensorViews], top_k: int = 3) -> list[Scores]:
        """Views of several images -> per image: subjects by probability (top k; empty without a subject head)
        and the AI probability."""
        return self.predict_batch(collate_views(*zip(*views, strict=True)), top_k)

    @torch.inference_mode()
    def predict_batch(self, batch: CollatedViews, top_k: int = 3) -> list[Scores]:
        """`predict_views` of views already batched by `collate_views` (in a data loader's worker, say)."""
        images, crops, owner = (t.to(self.device) if t is not None else None for t in batch)
        novelty = None
        if crops is None:
            subject_logits, source_logits = self.net(images)
            ai = torch.sigmoid(source_logits.float() / self.temperature).cpu().tolist()
        else:
            subject_logits = self.net.subject_logits(images) if images is not None else None
            logits, image_novelty = self.judged_by_image(crops, owner.cpu().numpy())
            ai = torch.sigmoid(torch.from_numpy(logits) / self.temperature).tolist()
            novelty = None if image_novelty is None else image_novelty.tolist()
        probs = None if subject_logits is None else torch.softmax(subject_logits.float(), dim=1).cpu().numpy()
        return self.ranked(probs, ai, top_k, novelty)

    def judged_by_image(self, crops: torch.Tensor, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Each image's source logit and novelty (or None) from its crops, as `Settling.judged` gives them."""

        def judge(chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
            logits, novelty = self.net.judged(crops[torch.from_numpy(chosen).to(crops.device)])
            return logits.float().cpu().numpy(), None if novelty is None else novelty.float().cpu().numpy()

        return self.settling.judged(judge, owner, self.threshold, self.temperature)
