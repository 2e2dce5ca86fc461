"""`predict.py BIG_DIR --devices N --out preds/`: a big folder predicted by several processes through Lightning,
into JSON Lines shards (`shards.py`), resumable.

Lightning launches the processes (on one machine by running the same command line again; or it joins those torchrun
or SLURM started) and places each on its device. Each process takes every N-th of the files still to do, decodes and
batches them in DataLoader workers, and scores them with the very `Predictor` of the single-process path, so views,
net and records are the same; its `ShardWriter` streams the records into its own shards. Nothing accumulates:
records go to disk batch by batch, and Lightning keeps none (`return_predictions=False`; the loader yields whole
batches, so Lightning has no batch sampler whose indices it would remember).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader

from detective.constants import CPU_PREDICT_BATCH, GPU_PREDICT_BATCH
from detective.predict.predictor import Predictor
from detective.predict.results import Result
from detective.predict.shards import (
    FileBatches,
    LoadedBatch,
    ShardStream,
    Summary,
    batch_results,
    plan_shards,
    summarise_shards,
)

# Lightning asks every predict loader for its batch sampler's indices; ours has none on purpose (see above). And
# persistent workers would only help a second pass over the loader, which prediction never makes.
warnings.filterwarnings("ignore", message="Couldn't infer the batch indices fetched from your dataloader")
warnings.filterwarnings("ignore", message="Consider setting `persistent_workers=True` in 'predict_dataloader'")


class DeviceError(RuntimeError):
    """The accelerator or device count asked for is not there (e.g. `--accelerator gpu` without one)."""


def is_first_process() -> bool:
    """Rank 0, known from the launcher's environment before any process starts: the one that reports for all."""
    return rank_zero_only.rank == 0


def _as_is(batch: LoadedBatch) -> LoadedBatch:
    return batch


class ShardPredictor(L.LightningModule):
    """The `Predictor` as Lightning runs it: this process's share of `files` in, one result per file out."""

    def __init__(
        self,
        checkpoint: Path,
        files: Sequence[str],
        batch_size: int | None = None,
        workers: int = 1,
        top_k: int = 3,
        threshold: float | None = None,
        uncertain: float = 0.0,
        threads: int | None = None,
    ) -> None:
        """`threads`: torch's CPU threads per process (default: the machine's cores shared among its processes);
        `batch_size`: images per batch (default: `Predictor`'s for the accelerator)."""
        super().__init__()
        self.checkpoint, self.files = checkpoint, list(files)
        self.batch_size, self.workers, self.top_k = batch_size, workers, top_k
        self.threshold, self.uncertain, self.threads = threshold, uncertain, threads

    def setup(self, stage: str) -> None:
        """Load the checkpoint in each process (the net is never pickled across); Lightning then moves it."""
        self.predictor = Predictor.from_checkpoint(self.checkpoint, "cpu", self.threshold, uncertain=self.uncertain)
        self.net = self.predictor.net
        if self.threads or isinstance(self.trainer.accelerator, CPUAccelerator):
            torch.set_num_threads(self.threads or max(1, (os.cpu_count() or 1) // self.trainer.num_devices))

    def on_predict_start(self) -> None:
        self.predictor.device = self.device

    def predict_dataloader(self) -> DataLoader:
        """Every world-size-th file from this process's rank on: each file in exactly one process, none twice."""
        share = self.files[self.global_rank :: self.trainer.world_size]
        on_cpu = isinstance(self.trainer.accelerator, CPUAccelerator)
        batch_size = self.batch_size or (CPU_PREDICT_BATCH if on_cpu else GPU_PREDICT_BATCH)
        return DataLoader(
            FileBatches(share, batch_size, self.checkpoint),
            batch_size=None,  # the dataset yields whole batches
            collate_fn=_as_is,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
        )

    def predict_step(self, batch: LoadedBatch) -> list[Result]:
        return batch_results(self.predictor, batch, self.top_k)


class ShardWriter(BasePredictionWriter):
    """Hands each batch's results to this process's `ShardStream` as the batch ends."""

    def __init__(self, out: Path, first_shard: int = 0, shard_size: int = 5000) -> None:
        super().__init__(write_interval="batch")
        self.out, self.first_shard, self.shard_size = out, first_shard, shard_size
        self._stream: ShardStream | None = None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stream = ShardStream(self.out, trainer.global_rank, self.first_shard, self.shard_size)

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: list[Result],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        assert self._stream is not None
        self._stream.write(prediction)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._stream is not None:
            self._stream.close()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if self._stream is not None:
            self._stream.abandon()


def launch_strategy(devices: int, num_nodes: int) -> str:
    """Several processes: `ddp`. Started by torchrun or SLURM, Lightning joins them as they are; on one machine
    without a launcher, it starts the other processes by running the same command line again (each then plans,
    predicts and writes its share), and their DataLoader workers fork rather than start afresh. One process needs no
    strategy."""
    return "ddp" if devices * num_nodes > 1 else "auto"


def predict_to_shards(
    checkpoint: Path,
    files: Sequence[str],
    out: Path,
    *,
    devices: int = 1,
    accelerator: str = "auto",
    num_nodes: int = 1,
    shard_size: int = 5000,
    progress: bool = False,
    **module: Any,
) -> Summary | None:
    """Predict the `files` no shard under `out` records yet; the `Summary` on rank 0, None on the other ranks.
    Raises `DeviceError` for an accelerator or device count this machine cannot give.

    `module`: `ShardPredictor`'s batch_size, workers, top_k, threshold, uncertain and threads."""
    writer = ShardWriter(out, shard_size=shard_size)
    try:
        trainer = L.Trainer(
            accelerator=accelerator,
            devices=devices,
            num_nodes=num_nodes,
            strategy=launch_strategy(devices, num_nodes),
            use_distributed_sampler=False,  # `predict_dataloader` shares the files out itself
            callbacks=[writer],
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress,
        )
        todo = plan_shards(out, files)  # once the options are known to be good: a mistyped one creates no folder
        writer.first_shard = todo.first_shard
        if todo.files:
            trainer.predict(ShardPredictor(checkpoint, todo.files, **module), return_predictions=False)
            trainer.strategy.barrier("shards written")  # under torchrun or SLURM: rank 0 reads them all next
    except MisconfigurationException as e:
        raise DeviceError(str(e).splitlines()[0]) from None
    return summarise_shards(out, files, todo.done) if trainer.is_global_zero else None
