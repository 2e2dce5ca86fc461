"""Checkpoints written atomically: a crash mid-save never leaves a truncated `.ckpt` behind.

Lightning's default writer may stage the file in the system temp folder and *copy* it over when
that is on another filesystem; here the bytes go through `atomic_write` (a temp file beside the
target, fsynced, renamed over it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from detective.files import atomic_write


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` to `path` via a sibling temp file and an atomic rename."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        torch.save(obj, f)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO whose saves are all-or-nothing."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_torch_save(checkpoint, path)
