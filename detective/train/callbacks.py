"""detective's own training callbacks; the others are Lightning's, all chosen in conf/callbacks."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from detective.memory import trim_freed_memory


class TrimFreedMemory(Callback):
    """Every `every_n_steps` training steps and after each validation, the heap's free pages go back to the system
    (`detective.memory`): on photos of many sizes glibc's heap otherwise fills with holes and the training process
    grows epoch after epoch. Nothing happens where the C library is not glibc."""

    def __init__(self, every_n_steps: int = 10) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be at least 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if (batch_idx + 1) % self.every_n_steps == 0:
            trim_freed_memory()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trim_freed_memory()
