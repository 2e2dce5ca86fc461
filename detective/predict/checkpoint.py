"""Reading a detective checkpoint as data (`weights_only`), without Lightning.

A Lightning checkpoint is a dict: `hyper_parameters` (plain values saved by the LightningModule)
and `state_dict` (the net's weights under `net.`). Nothing in it is executed.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from detective.commands import command
from detective.model.net import DetectiveNet
from detective.predict.discover import CheckpointError  # torch-free, for the ONNX path too; importable from here
from detective.predict.mobilenet_v2 import build_lite_net

REQUIRED_HPARAMS = ("subjects", "image_size", "crop_fraction", "mean", "std", "threshold")
NET_PREFIX = "net."
# Settings added after the first checkpoints were written, with the value those were trained with: the config's
# defaults have moved on since (`conf/model`), and a checkpoint must load as it was trained. The views have their own
# (`ViewSettings.from_hparams`).
ADDED_HPARAMS: dict[str, Any] = {
    "source_taps": [],
    "source_statistics": ["mean", "std"],
    "source_loss": "image",
    "freeze_batchnorm": False,
    "cache_features": False,
    "settle_crops": 0,  # every crop judged (`settling`)
    "settle_margin": 0.0,
    "temperature": 1.0,  # AI probabilities as the net gave them (`fit_temperature`)
}


@dataclass(frozen=True)
class CheckpointInfo:
    """What prediction needs from a checkpoint: the trained net's settings and weights."""

    path: Path
    hparams: dict[str, Any]
    state_dict: dict[str, torch.Tensor]

    @property
    def subjects(self) -> list[str]:
        return list(self.hparams["subjects"])

    def build_net(self, lite: bool = True) -> torch.nn.Module:
        """The trained net, in eval mode, on the CPU.

        `lite` uses the torchvision-free trunk twin (`mobilenet_v2.py`) where it covers the backbone: the same
        numbers, without paying for importing torchvision. Otherwise (or with `lite=False`) torchvision's.
        """
        with self._weights_checked():
            net = build_lite_net(self.hparams, self.state_dict) if lite else None
            if net is not None:
                return net
            full = DetectiveNet.from_hparams(self.hparams)
            full.load_state_dict(self.state_dict)
            return full.eval()

    @contextmanager
    def _weights_checked(self) -> Iterator[None]:
        try:
            yield
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            reason = (lines[1] if len(lines) > 1 else lines[0] if lines else type(err).__name__)[:160]
            raise CheckpointError(f"{self.path}: weights do not fit the saved settings ({reason})") from None


def migrate_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's hyperparameters as the current code takes them: settings it predates get the value it was
    trained with."""
    return {**ADDED_HPARAMS, **hparams}


def read_checkpoint(path: str | Path) -> CheckpointInfo:
    """Load a checkpoint safely (tensors and plain values only) and check it is a detective one."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (train one with `{command('train')}`)")
    try:
        # mmap: only the net's tensors are read from disk, not the optimizer state saved beside them.
        raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot be read ({err.strerror or err})") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError):  # torch's reasons name its internals
        raise CheckpointError(
            f"{path}: not a checkpoint written by train.py, or damaged; "
            "give a run's checkpoints/best.ckpt, or a model.onnx from --export"
        ) from None
    hparams = raw.get("hyper_parameters") if isinstance(raw, Mapping) else None
    state = raw.get("state_dict") if isinstance(raw, Mapping) else None
    if (
        not isinstance(hparams, Mapping)
        or not isinstance(state, Mapping)
        or not all(k in hparams for k in REQUIRED_HPARAMS)
    ):
        raise CheckpointError(
            f"{path}: not a detective checkpoint (no subjects/image size/threshold saved); "
            "use a .ckpt written by train.py"
        )
    weights = {k[len(NET_PREFIX) :]: v for k, v in state.items() if k.startswith(NET_PREFIX)}
    return CheckpointInfo(path, migrate_hparams(hparams), weights)
