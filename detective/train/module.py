"""The LightningModule: losses, metrics, optimiser and the two-phase transfer-learning schedule.

Everything `__init__` takes is a plain value saved with `save_hyperparameters`, so a checkpoint is
self-describing: `DetectiveModule.load_from_checkpoint(path)` and the predictor need nothing else. That includes
how images become the network's input (`image_size`, `crop_fraction`, the source view and its crops): the model
carries its data settings, and prediction builds its views from them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, binary_average_precision

from detective.constants import IMAGENET_MEAN, IMAGENET_STD, UNFAMILIAR_QUANTILE
from detective.data.dataset import Batch
from detective.evaluation.metrics import best_balanced_threshold, fit_temperature
from detective.model.net import DetectiveNet, freeze_backbone, mean_by_owner, unfreeze_backbone
from detective.predict.checkpoint import ADDED_HPARAMS, read_checkpoint
from detective.predict.settling import Settling
from detective.train.metrics import Collected, GroupAccuracy, source_metric_collection, subject_metric_collection

STAGES = ("train", "val", "test")
SOURCE_LOSSES = ("image", "crop")


class Scored(NamedTuple):
    subject_logits: Tensor | None
    source_logits: Tensor  # per image
    novelty: Tensor | None  # per image: the mean of its crops' (`DetectiveNet.judged`); None without crops or taps
    losses: dict[str, Tensor]


class DetectiveModule(L.LightningModule):
    """Two heads on one backbone: loss = subject_weight * CE(subject) + source_weight * BCE(source).

    With fewer than two `subjects` (source-only data) there is no subject head: no subject loss, no subject metrics.
    """

    def __init__(
        self,
        subjects: Sequence[str],
        image_size: int,
        crop_fraction: float,
        source_view: str,
        source_crop: int,
        source_crops: int,
        labels: Mapping[str, Any],
        backbone: str,
        shared: int,
        subject_hidden: int,
        source_hidden: int,
        dropout: float,
        subject_weight: float,
        source_weight: float,
        label_smoothing: float,
        lr: float,
        backbone_lr_factor: float,
        weight_decay: float,
        freeze_epochs: int,
        finetune: bool,
        freeze_batchnorm: bool,
        source_taps: Sequence[int],
        source_statistics: Sequence[str],
        source_loss: str,
        cache_features: bool,
        settle_crops: int,
        settle_margin: float,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        source_pos_weight: float | None = None,
        threshold: float = 0.5,
        temperature: float = 1.0,
        novelty_limit: float | None = None,
        channels_last: bool = True,
        frozen_backbone: str = "folded",
        compile: bool = False,
    ) -> None:
        """Defaults only for what the run decides (`source_pos_weight`, the calibrated `threshold`, `temperature`
        and `novelty_limit`), the statistics every ImageNet backbone was trained with, and speed settings that change no
        result; every other value comes from `conf/model` (`freeze_batchnorm` and `cache_features` resolved from
        `auto` by the run). Checkpoints from before a setting existed load through `load_from_checkpoint`, which fills
        it in as they were trained.

        `source_loss`: "image" scores each image's source logit (the mean of its crops'); "crop" scores every crop's
        logit against its image's label, so each crop must show the traces on its own (README "Detection").
        `settle_crops`, `settle_margin`: when prediction answers for an image from its first crops (`Settling`); the
        test metrics follow the same rule, validation (which calibrates the threshold) reads every crop."""
        super().__init__()
        if source_loss not in SOURCE_LOSSES:
            raise ValueError(f"source_loss must be one of {', '.join(SOURCE_LOSSES)}, got {source_loss!r}")
        self.save_hyperparameters()
        self.subjects = list(subjects) if len(subjects) >= 2 else []
        self.settling = Settling(settle_crops, settle_margin)
        self.net = DetectiveNet(
            len(self.subjects),
            backbone=backbone,
            shared=shared,
            subject_hidden=subject_hidden,
            source_hidden=source_hidden,
            dropout=dropout,
            source_taps=source_taps,
            source_statistics=source_statistics,
            mean=mean,
            std=std,
        )
        self.net.set_speed(
            channels_last=channels_last, frozen_backbone=frozen_backbone, compile=compile, cache_features=cache_features
        )
        n = len(self.subjects)
        for stage in STAGES:
            if n:
                setattr(self, f"{stage}_subject_metrics", subject_metric_collection(n).clone(prefix=f"{stage}/"))
            setattr(self, f"{stage}_source_metrics", source_metric_collection().clone(prefix=f"{stage}/"))
        if n:
            self.per_subject = torch.nn.ModuleDict({stage: GroupAccuracy(n) for stage in ("val_", "test_")})
        # Every (source logit, target) of an epoch: for AUROC/AP and the temperature and threshold calibration.
        self.collected = torch.nn.ModuleDict({stage: Collected() for stage in ("val_", "test_")})
        self.novelty = torch.nn.ModuleDict({stage: Collected() for stage in ("val_", "test_")})  # per image
        pos_weight = torch.tensor(source_pos_weight if source_pos_weight else 1.0)
        self.register_buffer("pos_weight", pos_weight, persistent=False)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path, *args: Any, **kwargs: Any) -> DetectiveModule:
        """Lightning's, with the settings an older checkpoint lacks filled in as it was trained (`migrate_hparams`,
        which `predict.py` reads checkpoints through too); keyword arguments still override."""
        saved = read_checkpoint(checkpoint_path).hparams
        added = {key: saved[key] for key in ADDED_HPARAMS}
        return super().load_from_checkpoint(checkpoint_path, *args, **{**added, **kwargs})

    @property
    def threshold(self) -> float:
        return float(self.hparams.threshold)

    @property
    def temperature(self) -> float:
        return float(self.hparams.temperature)

    def probability(self, source_logits: Tensor) -> Tensor:
        """AI probabilities of images' source logits, as `Predictor` reports them."""
        return torch.sigmoid(source_logits.detach().float() / self.temperature)

    @property
    def has_subject_head(self) -> bool:
        return bool(self.subjects)

    def forward(
        self, images: Tensor | None, crops: Tensor | None = None, owner: Tensor | None = None
    ) -> tuple[Tensor | None, Tensor]:
        return self.net(images, crops, owner)

    def loss(
        self, subject_logits: Tensor | None, source_logits: Tensor, subjects: Tensor, sources: Tensor
    ) -> dict[str, Tensor]:
        """The weighted two-head loss, from logits (stable log-softmax / log-sigmoid); source only without a
        subject head. `source_logits` and `sources` are per image, or per crop with `source_loss: crop`."""
        bce = F.binary_cross_entropy_with_logits(source_logits, sources, pos_weight=self.pos_weight)
        losses = {"loss": self.hparams.source_weight * bce, "source_loss": bce}
        if subject_logits is not None:
            ce = F.cross_entropy(subject_logits, subjects, label_smoothing=self.hparams.label_smoothing)
            losses["subject_loss"] = ce
            losses["loss"] = losses["loss"] + self.hparams.subject_weight * ce
        return losses

    def scored(self, batch: Batch, settle: bool = False) -> Scored:
        """A batch's logits, novelty and losses; with `source_loss: crop` the source loss scores every crop's logit
        against its image's label. `settle`: each image's answer as prediction gives it (`settled`)."""
        if batch.crops is None:
            subject_logits, source_logits = self(batch.images)
            losses = self.loss(subject_logits, source_logits, batch.subjects, batch.sources)
            return Scored(subject_logits, source_logits, None, losses)
        subject_logits, per_crop, novelty = self.net.crop_heads(batch.images, batch.crops)
        if settle:
            source_logits, novelty = self.settled(per_crop, novelty, batch.owner)
        else:
            source_logits = mean_by_owner(per_crop, batch.owner)
            novelty = None if novelty is None else mean_by_owner(novelty, batch.owner)
        if self.hparams.source_loss == "crop":
            losses = self.loss(subject_logits, per_crop, batch.subjects, batch.sources[batch.owner])
        else:
            losses = self.loss(subject_logits, source_logits, batch.subjects, batch.sources)
        return Scored(subject_logits, source_logits, novelty, losses)

    def settled(self, per_crop: Tensor, novelty: Tensor | None, owner: Tensor) -> tuple[Tensor, Tensor | None]:
        """Each image's source logit and novelty (or None) from all its crops' under `settling` and the calibrated
        threshold: what `Predictor` answers, which judges only the crops the rule reads."""
        as_array = lambda t: t.detach().float().cpu().numpy()  # noqa: E731
        logits, image_novelty = self.settling.answer(
            as_array(per_crop),
            owner.cpu().numpy(),
            self.threshold,
            None if novelty is None else as_array(novelty),
            self.temperature,
        )
        as_tensor = lambda a: torch.from_numpy(a).to(per_crop.device)  # noqa: E731
        return as_tensor(logits), None if image_novelty is None else as_tensor(image_novelty)

    def _step(self, batch: Batch | None, stage: str) -> Tensor | None:
        if batch is None:  # every image of the batch failed to decode (already reported)
            return None
        subject_logits, source_logits, novelty, losses = self.scored(batch, settle=stage == "test")
        decisions = (self.probability(source_logits) >= self.threshold).long()
        metrics = [getattr(self, f"{stage}_source_metrics")]
        metrics[0].update(decisions, batch.sources.long())
        if subject_logits is not None:
            metrics.append(getattr(self, f"{stage}_subject_metrics"))
            metrics[1].update(subject_logits.detach(), batch.subjects)
        if stage != "train":
            self.collected[f"{stage}_"].update(source_logits, batch.sources)
            if novelty is not None:
                self.novelty[f"{stage}_"].update(novelty, batch.sources)
            if self.has_subject_head:
                self.per_subject[f"{stage}_"].update(decisions, batch.sources, batch.subjects)
        on_step = stage == "train"
        batch_size = len(batch.sources)
        self.log_dict(
            {f"{stage}/{k}": v.detach() for k, v in losses.items()},
            on_step=on_step,
            on_epoch=True,
            prog_bar=stage != "test",
            batch_size=batch_size,
            sync_dist=not on_step,
        )
        for collection in metrics:
            self.log_dict(collection, on_epoch=True, batch_size=batch_size)
        return losses["loss"]

    def training_step(self, batch: Batch | None, batch_idx: int) -> Tensor | None:
        return self._step(batch, "train")

    def validation_step(self, batch: Batch | None, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Batch | None, batch_idx: int) -> None:
        self._step(batch, "test")

    def _log_per_subject(self, stage: str) -> None:
        if not self.has_subject_head:
            return
        accuracy = self.per_subject[f"{stage}_"].compute()
        for name, value in zip(self.subjects, accuracy, strict=True):
            # Already reduced across processes by the metric; sync_dist only silences Lightning's warning.
            self.log(f"{stage}/source_acc/{name}", value, sync_dist=True)
        self.per_subject[f"{stage}_"].reset()

    def _collected(self, stage: str) -> tuple[Tensor, Tensor] | None:
        """The epoch's source logits and targets (None when it had none); the collection starts again."""
        collected = self.collected[f"{stage}_"]
        if collected.update_count == 0:
            return None
        logits, target = collected.compute()
        collected.reset()
        return logits, target

    def _ranking(self, probs: Tensor, target: Tensor, stage: str) -> float | None:
        """Logs AUROC and AP when both sources are present (with one source they are undefined, and torchmetrics'
        0.0 would mislead); returns the AUROC."""
        auroc = None
        if target.min() != target.max():
            auroc = float(binary_auroc(probs, target))
            self.log(f"{stage}/source_auroc", auroc)
            self.log(f"{stage}/source_ap", binary_average_precision(probs, target))
        return auroc

    def on_validation_epoch_end(self) -> None:
        """Re-calibrate the source temperature, then the threshold, on this epoch's validation predictions, and log
        `val/score`.

        They land in the hyperparameters before the checkpoint callback saves, so every checkpoint carries the
        calibration that suits its own weights (the best one included; see `on_load_checkpoint`).
        """
        self._log_per_subject("val")
        collected = self._collected("val")
        novelty = self._novelty("val")
        if collected is None or self.trainer.sanity_checking:
            return
        logits, target = collected
        self.hparams.temperature = fit_temperature(logits, target)
        self.log("val/temperature", self.temperature)
        probs = self.probability(logits)
        auroc = self._ranking(probs, target, "val")
        threshold, balanced = best_balanced_threshold(probs, target)
        self.hparams.threshold = threshold
        self.log("val/threshold", threshold)
        if novelty is not None:
            self.hparams.novelty_limit = float(torch.quantile(novelty, UNFAMILIAR_QUANTILE))
            self.log("val/novelty_limit", self.hparams.novelty_limit)
        if not math.isnan(balanced):
            self.log("val/source_balanced_acc", balanced)
        self.log("val/score", self._score(auroc))

    def _novelty(self, stage: str) -> Tensor | None:
        """The epoch's novelty per image (None without taps), for `novelty_limit`: the novelty that
        UNFAMILIAR_QUANTILE of the validation images stay under, above which prediction calls an image unfamiliar.
        Validation images are held-out images of the training collections, so few of theirs are flagged."""
        collected = self.novelty[f"{stage}_"]
        if collected.update_count == 0:
            return None
        novelty, _ = collected.compute()
        collected.reset()
        return novelty

    def _score(self, auroc: float | None) -> float:
        """What checkpointing and early stopping watch: the source head's validation AUROC, averaged with subject
        accuracy when there is a subject head. Both are bounded and threshold-free, unlike `val/loss`, whose
        subject part dominates and which grows when either head merely turns over-confident."""
        scores = [] if auroc is None else [auroc]
        if self.has_subject_head:
            scores.append(float(self.val_subject_metrics["subject_acc"].compute()))
        return sum(scores) / len(scores) if scores else 0.0

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """`trainer.test(ckpt_path=best)` restores the best epoch's weights; its calibration must come with them (the
        hyperparameters in memory hold the last epoch's)."""
        self.hparams.threshold = checkpoint["hyper_parameters"]["threshold"]
        self.hparams.temperature = checkpoint["hyper_parameters"].get("temperature", 1.0)
        self.hparams.novelty_limit = checkpoint["hyper_parameters"].get("novelty_limit")

    def on_test_epoch_end(self) -> None:
        self._log_per_subject("test")
        collected = self._collected("test")
        if collected is not None:
            self._ranking(self.probability(collected[0]), collected[1], "test")
        novelty, limit = self._novelty("test"), self.hparams.get("novelty_limit")
        if novelty is not None and limit is not None:
            self.log("test/unfamiliar", (novelty > limit).float().mean())

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
        optimizer = adamw(groups, self.hparams.weight_decay)
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def adamw(groups: list[dict], weight_decay: float) -> torch.optim.AdamW:
    """AdamW in torch's fused form (one kernel for all parameters: its step takes a fraction of the per-tensor
    loop's, which matters when the backbone learns, README "Speed"), or the plain one on a device without it."""
    try:
        return torch.optim.AdamW(groups, weight_decay=weight_decay, fused=True)
    except RuntimeError:  # "`fused=True` requires all the params to be floating point Tensors of supported devices"
        return torch.optim.AdamW(groups, weight_decay=weight_decay)
