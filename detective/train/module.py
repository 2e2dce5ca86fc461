"""The LightningModule: losses, metrics, optimiser and the two-phase transfer-learning schedule.

Everything `__init__` takes is a plain value saved with `save_hyperparameters`, so a checkpoint is
self-describing: `DetectiveModule.load_from_checkpoint(path)` and the predictor need nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, binary_average_precision

from detective.data.transforms import DEFAULT_CROP_FRACTION, IMAGENET_MEAN, IMAGENET_STD
from detective.model.net import DetectiveNet, freeze_backbone, unfreeze_backbone
from detective.train.metrics import (
    Collected,
    GroupAccuracy,
    best_balanced_threshold,
    source_metrics,
    subject_metrics,
)

Batch = tuple[Tensor, Tensor, Tensor]


class DetectiveModule(L.LightningModule):
    """Two heads on one backbone: loss = subject_weight * CE(subject) + source_weight * BCE(source)."""

    def __init__(
        self,
        subjects: Sequence[str],
        image_size: int = 224,
        crop_fraction: float = DEFAULT_CROP_FRACTION,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        backbone: str = "mobilenet_v2",
        shared: int = 128,
        subject_hidden: int = 64,
        source_hidden: int = 32,
        dropout: float = 0.3,
        subject_weight: float = 1.0,
        source_weight: float = 1.5,
        label_smoothing: float = 0.0,
        source_pos_weight: float | None = None,
        lr: float = 1e-3,
        backbone_lr_factor: float = 0.1,
        weight_decay: float = 1e-4,
        freeze_epochs: int = 1,
        finetune: bool = True,
        freeze_batchnorm: bool = False,
        threshold: float = 0.5,
        channels_last: bool = True,
        frozen_backbone: str = "jit",
        compile: bool = False,
        cache_features: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.subjects = list(subjects)
        self.net = DetectiveNet(
            len(self.subjects),
            backbone=backbone,
            shared=shared,
            subject_hidden=subject_hidden,
            source_hidden=source_hidden,
            dropout=dropout,
            mean=mean,
            std=std,
        )
        self.net.set_speed(
            channels_last=channels_last, frozen_backbone=frozen_backbone, compile=compile, cache_features=cache_features
        )
        n = len(self.subjects)
        # ModuleDict keys cannot be "train" (nn.Module.train exists), hence the "_<stage>" keys.
        self.subject_metrics = torch.nn.ModuleDict({f"_{s}": subject_metrics(n) for s in ("train", "val", "test")})
        self.source_metrics = torch.nn.ModuleDict({f"_{s}": source_metrics() for s in ("train", "val", "test")})
        self.per_subject = torch.nn.ModuleDict({f"_{s}": GroupAccuracy(n) for s in ("val", "test")})
        # Every (AI probability, target) of an epoch: for AUROC/AP and the threshold calibration.
        self.collected = torch.nn.ModuleDict({f"_{s}": Collected() for s in ("val", "test")})
        pos_weight = torch.tensor(source_pos_weight if source_pos_weight else 1.0)
        self.register_buffer("pos_weight", pos_weight, persistent=False)

    @property
    def threshold(self) -> float:
        return float(self.hparams.threshold)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self.net(images)

    def loss(
        self, subject_logits: Tensor, source_logits: Tensor, subjects: Tensor, sources: Tensor
    ) -> dict[str, Tensor]:
        """The weighted two-head loss, from logits (stable log-softmax / log-sigmoid)."""
        ce = F.cross_entropy(subject_logits, subjects, label_smoothing=self.hparams.label_smoothing)
        bce = F.binary_cross_entropy_with_logits(source_logits, sources, pos_weight=self.pos_weight)
        total = self.hparams.subject_weight * ce + self.hparams.source_weight * bce
        return {"loss": total, "subject_loss": ce, "source_loss": bce}

    def _step(self, batch: Batch | None, stage: str) -> Tensor | None:
        if batch is None:  # every image of the batch failed to decode (already reported)
            return None
        images, subjects, sources = batch
        subject_logits, source_logits = self(images)
        losses = self.loss(subject_logits, source_logits, subjects, sources)
        probs = torch.sigmoid(source_logits.detach().float())
        decisions = (probs >= self.threshold).long()
        self.subject_metrics[f"_{stage}"].update(subject_logits.detach(), subjects)
        self.source_metrics[f"_{stage}"].update(decisions, sources.long())
        if stage != "train":
            self.collected[f"_{stage}"].update(probs, sources)
            self.per_subject[f"_{stage}"].update(decisions, sources, subjects)
        on_step = stage == "train"
        batch_size = images.shape[0]
        self.log_dict(
            {f"{stage}/{k}": v.detach() for k, v in losses.items()},
            on_step=on_step,
            on_epoch=True,
            prog_bar=stage != "test",
            batch_size=batch_size,
            sync_dist=not on_step,
        )
        for collection in (self.subject_metrics[f"_{stage}"], self.source_metrics[f"_{stage}"]):
            self.log_dict({f"{stage}/{k}": m for k, m in collection.items()}, on_epoch=True, batch_size=batch_size)
        return losses["loss"]

    def training_step(self, batch: Batch | None, batch_idx: int) -> Tensor | None:
        return self._step(batch, "train")

    def validation_step(self, batch: Batch | None, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Batch | None, batch_idx: int) -> None:
        self._step(batch, "test")

    def _log_per_subject(self, stage: str) -> None:
        accuracy = self.per_subject[f"_{stage}"].compute()
        for name, value in zip(self.subjects, accuracy, strict=True):
            # Already reduced across processes by the metric; sync_dist only silences Lightning's warning.
            self.log(f"{stage}/source_acc/{name}", value, sync_dist=True)
        self.per_subject[f"_{stage}"].reset()

    def _ranking(self, stage: str) -> tuple[Tensor, Tensor] | None:
        """The epoch's probabilities and targets; logs AUROC and AP when both sources are present
        (with one source they are undefined, and torchmetrics' 0.0 would mislead)."""
        collected = self.collected[f"_{stage}"]
        if collected.update_count == 0:
            return None
        probs, target = collected.compute()
        collected.reset()
        if target.min() != target.max():
            self.log(f"{stage}/source_auroc", binary_auroc(probs, target))
            self.log(f"{stage}/source_ap", binary_average_precision(probs, target))
        return probs, target

    def on_validation_epoch_end(self) -> None:
        """Re-calibrate the source threshold on this epoch's validation predictions.

        It lands in the hyperparameters before the checkpoint callback saves, so every checkpoint
        carries the threshold that suits its own weights (the best one included).
        """
        self._log_per_subject("val")
        collected = self._ranking("val")
        if collected is None or self.trainer.sanity_checking:
            return
        probs, target = collected
        threshold, balanced = best_balanced_threshold(probs, target)
        self.hparams.threshold = threshold
        self.log("val/threshold", threshold)
        if not math.isnan(balanced):
            self.log("val/source_balanced_acc", balanced)

    def on_test_epoch_end(self) -> None:
        self._log_per_subject("test")
        self._ranking("test")

    def on_train_epoch_start(self) -> None:
        """Phase 1 trains the heads on a frozen backbone (BatchNorm in eval); phase 2 fine-tunes it all, BatchNorm's
        statistics included unless `freeze_batchnorm`."""
        frozen = self.current_epoch < self.hparams.freeze_epochs or not self.hparams.finetune
        keep_statistics = self.hparams.freeze_batchnorm
        if frozen and not self.net.backbone_frozen:
            freeze_backbone(self.net)
        elif not frozen and (self.net.backbone_frozen or self.net.statistics_frozen != keep_statistics):
            unfreeze_backbone(self.net, keep_statistics)

    def configure_optimizers(self):
        """AdamW with a lower rate for the backbone, cosine-annealed over the run."""
        groups = [
            {"params": list(self.net.head_parameters()), "lr": self.hparams.lr},
            {"params": list(self.net.backbone_parameters()), "lr": self.hparams.lr * self.hparams.backbone_lr_factor},
        ]
        optimizer = torch.optim.AdamW(groups, weight_decay=self.hparams.weight_decay)
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
