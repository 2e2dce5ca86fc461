"""`Predictor`: a trained checkpoint -> typed predictions for paths, PIL images or bytes.

The image goes through `eval_transform`, the very function validation and testing use, with
the image size and crop saved in the checkpoint, so training and prediction cannot disagree.
Decoding runs in a thread pool ahead of the forward pass (`batching`; Pillow and torch both release
the GIL), so a long list costs about what the model costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from detective.data.transforms import eval_transform, load_image
from detective.model.net import DetectiveNet
from detective.predict.batching import BatchPredictor, ImageInput, Scores
from detective.predict.checkpoint import read_checkpoint
from detective.predict.results import Failure, Prediction, Result

# Results and input types live in torch-free modules shared with the ONNX predictor; still importable from here.
__all__ = ["Failure", "ImageInput", "Prediction", "Predictor", "Result", "pick_device"]


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
        image_size: int,
        crop_fraction: float,
        threshold: float,
        device: str = "auto",
        channels_last: bool = True,
    ) -> None:
        super().__init__(subjects, image_size, crop_fraction, threshold)
        self.device = pick_device(device)
        if isinstance(net, DetectiveNet):  # the layout training used by default: ~1.7x faster on CPU
            net.set_speed(channels_last=channels_last, frozen_backbone="eager")
        self.net = net.to(self.device).eval()
        self.transform = eval_transform(image_size, crop_fraction)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "auto", threshold: float | None = None, lite: bool = True
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
            int(hp["image_size"]),
            float(hp["crop_fraction"]),
            float(hp["threshold"] if threshold is None else threshold),
            device,
        )

    def load(self, image: ImageInput) -> torch.Tensor:
        """Decode and transform one input into the uint8 (3, S, S) tensor the net takes."""
        return self.transform(load_image(image, self.min_side))

    def score(self, loaded: Sequence[torch.Tensor], top_k: int) -> list[Scores]:
        return self.predict_tensors(torch.stack(list(loaded)), top_k)

    @torch.inference_mode()
    def predict_tensors(self, batch: torch.Tensor, top_k: int = 3) -> list[Scores]:
        """A uint8 batch -> per image: subjects by probability (top k) and the AI probability."""
        subject_logits, source_logits = self.net(batch.to(self.device))
        probs = torch.softmax(subject_logits.float(), dim=1).cpu()
        ai = torch.sigmoid(source_logits.float()).cpu()
        k = max(1, min(top_k, len(self.subjects)))
        values, indices = probs.topk(k, dim=1)
        return [
            ([(self.subjects[i], float(v)) for v, i in zip(vs, ix, strict=True)], float(p))
            for vs, ix, p in zip(values.tolist(), indices.tolist(), ai.tolist(), strict=True)
        ]
