"""One training run from a composed Hydra config: data -> model -> fit -> test -> report.

`train.py` only hands the config over; everything here is importable and testable.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar
from omegaconf import DictConfig, OmegaConf

from detective.data.audit import DataError
from detective.data.datamodule import DetectiveDataModule
from detective.logs import configure_output, on_terminal
from detective.memory import reusing_freed_memory
from detective.model.pretrained import PretrainedWeightsError, load_backbone_weights
from detective.train.checkpoint_io import AtomicCheckpointIO
from detective.train.config import plain
from detective.train.module import DetectiveModule
from detective.train.report import report

log = logging.getLogger(__name__)


class NoDeviceError(RuntimeError):
    """The trainer config asks for an accelerator this machine does not have."""


def check_accelerator(cfg: DictConfig) -> None:
    """`trainer=gpu` on a machine without CUDA: say so plainly instead of a Lightning stack trace."""
    if cfg.trainer.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        raise NoDeviceError(f"trainer={cfg.trainer.accelerator} but no CUDA GPU is visible here; use trainer=cpu")


class ConfigError(ValueError):
    """An option value the run cannot use; the message names the option and the fix."""


# Errors whose message tells the user what to fix; train.py prints them as one line.
USER_ERRORS = (DataError, PretrainedWeightsError, FileNotFoundError, NotADirectoryError, NoDeviceError, ConfigError)


# Keys of the `model` config that steer the run but are not LightningModule hyperparameters.
RUN_ONLY_MODEL_KEYS = ("pretrained", "weights_path", "balance_source")


def auto_flag(name: str, value: Any, auto: bool) -> bool:
    """A true/false/auto option: `auto` takes the value the run's situation suggests."""
    if value == "auto":
        return auto
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{name} must be true, false or auto, got {value!r}")


def source_pos_weight(datamodule: DetectiveDataModule) -> float | None:
    """real/AI ratio of the train split, so that both sources weigh the same in the BCE loss."""
    train = datamodule.splits["train"]
    n_ai = sum(s.is_ai for s in train)
    return (len(train) - n_ai) / n_ai if n_ai else None


def resolve_cache_features(value: Any, datamodule: DetectiveDataModule) -> bool:
    """`model.cache_features=auto`: cache a frozen backbone's features when every epoch shows the same images."""
    return auto_flag("model.cache_features", value, datamodule.deterministic)


def resolve_freeze_batchnorm(cfg: DictConfig) -> bool:
    """`model.freeze_batchnorm=auto`: keep pretrained statistics; a backbone trained from scratch has none to keep."""
    has_statistics = bool(cfg.model.pretrained) or cfg.model.weights_path is not None
    freeze = auto_flag("model.freeze_batchnorm", cfg.model.freeze_batchnorm, has_statistics)
    if freeze and not has_statistics:
        raise ConfigError(
            "model.freeze_batchnorm=true needs pretrained weights (a random backbone has no BatchNorm statistics to "
            "keep): set model.pretrained=true or model.weights_path, or model.freeze_batchnorm=false"
        )
    return freeze


def module_arguments(cfg: DictConfig) -> dict[str, Any]:
    """`conf/model`'s values as `DetectiveModule` takes them (the run-only keys left out, `auto`s still open)."""
    return {k: v for k, v in plain(cfg.model).items() if k not in RUN_ONLY_MODEL_KEYS}


def build_module(cfg: DictConfig, datamodule: DetectiveDataModule) -> DetectiveModule:
    """The LightningModule with pretrained backbone weights loaded as the config asks."""
    kwargs = module_arguments(cfg)
    kwargs["cache_features"] = resolve_cache_features(kwargs["cache_features"], datamodule)
    kwargs["freeze_batchnorm"] = resolve_freeze_batchnorm(cfg)
    if cfg.model.balance_source:
        kwargs["source_pos_weight"] = source_pos_weight(datamodule)
    module = DetectiveModule(subjects=datamodule.subjects, **kwargs)
    weights = load_backbone_weights(
        module.net, pretrained=bool(cfg.model.pretrained), weights_path=cfg.model.weights_path
    )
    log.info("Backbone: %s, %s", module.hparams.backbone, weights)
    return module


def build_trainer(cfg: DictConfig) -> L.Trainer:
    """The Trainer with the configured callbacks and loggers; progress bars only on a terminal (in a log file
    they are thousands of carriage-return lines)."""
    callbacks: list[Callback] = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    bars = on_terminal()
    if not bars:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        default_root_dir=cfg.paths.output_dir,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=bars,
    )


def checkpoint_callback(trainer: L.Trainer) -> ModelCheckpoint | None:
    return trainer.checkpoint_callback if isinstance(trainer.checkpoint_callback, ModelCheckpoint) else None


def kept_score(trainer: L.Trainer, ckpt: ModelCheckpoint | None, metric: str) -> float | None:
    """`metric` of the checkpoint kept: the best epoch's, or with no monitor (`callbacks=final`) the last epoch's."""
    if ckpt is not None and ckpt.monitor is None:
        value = trainer.callback_metrics.get(metric)
        return None if value is None else float(value)
    return best_score(ckpt)


def best_score(ckpt: ModelCheckpoint | None) -> float | None:
    """The monitored metric of the best checkpoint; after spawn-based DDP only its file knows it."""
    if ckpt is None or not ckpt.best_model_path:
        return None
    if ckpt.best_model_score is not None:
        return float(ckpt.best_model_score)
    states = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True).get("callbacks", {})
    scores = [s.get("best_model_score") for k, s in states.items() if k.startswith("ModelCheckpoint")]
    return float(scores[0]) if scores and scores[0] is not None else None


def save_resolved_config(cfg: DictConfig) -> Path:
    """`config.yaml` in the run folder with every interpolation resolved: what this run really used."""
    path = Path(cfg.paths.output_dir) / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, path, resolve=True)
    return path


def train(cfg: DictConfig) -> float | None:
    """Fit, test the best checkpoint, print the summary; return the monitored metric for sweepers."""
    check_accelerator(cfg)
    configure_output()
    with reusing_freed_memory(cfg.reuse_freed_memory):
        return _fit_and_test(cfg)


def _fit_and_test(cfg: DictConfig) -> float | None:
    L.seed_everything(cfg.seed, workers=True)
    save_resolved_config(cfg)
    datamodule: DetectiveDataModule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup()
    module = build_module(cfg, datamodule)
    trainer = build_trainer(cfg)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    ckpt = checkpoint_callback(trainer)
    best = ckpt.best_model_path if ckpt and ckpt.best_model_path else None
    score = kept_score(trainer, ckpt, cfg.optimized_metric)
    if cfg.get("test"):
        metrics = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)
        if trainer.is_global_zero:
            report(
                metrics[0] if metrics else {}, best, datamodule, cfg.seed, Path(cfg.paths.output_dir), trainer.loggers
            )
    return score
