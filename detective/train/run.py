"""One training run from a composed Hydra config: data -> model -> fit -> test -> report.

`train.py` only hands the config over; everything here is importable and testable.
"""

from __future__ import annotations

import random
import shlex
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from detective.commands import command
from detective.data.audit import DataError
from detective.data.datamodule import DetectiveDataModule
from detective.memory import reusing_freed_memory
from detective.model.pretrained import PretrainedWeightsError, load_backbone_weights
from detective.train.checkpoint_io import AtomicCheckpointIO
from detective.train.config import plain
from detective.train.module import DetectiveModule


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


def resolve_pretrained(cfg: DictConfig) -> bool:
    """`model.pretrained=auto`: ImageNet weights on your data, training from scratch on the demo set."""
    return auto_flag("model.pretrained", cfg.model.pretrained, cfg.data.root is not None)


def source_pos_weight(datamodule: DetectiveDataModule) -> float | None:
    """real/AI ratio of the train split, so that both sources weigh the same in the BCE loss."""
    train = datamodule.splits["train"]
    n_ai = sum(s.is_ai for s in train)
    return (len(train) - n_ai) / n_ai if n_ai else None


def resolve_cache_features(value: Any, datamodule: DetectiveDataModule) -> bool:
    """`model.cache_features=auto`: remember a frozen backbone's features when every epoch shows the same images."""
    return auto_flag("model.cache_features", value, datamodule.deterministic)


def resolve_freeze_batchnorm(cfg: DictConfig) -> bool:
    """`model.freeze_batchnorm=auto`: keep pretrained statistics; a backbone trained from scratch has none to keep."""
    has_statistics = resolve_pretrained(cfg) or cfg.model.weights_path is not None
    freeze = auto_flag("model.freeze_batchnorm", cfg.model.get("freeze_batchnorm", False), has_statistics)
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
    weights = load_backbone_weights(module.net, pretrained=resolve_pretrained(cfg), weights_path=cfg.model.weights_path)
    print(f"Backbone: {module.hparams.backbone}, {weights}")
    return module


def build_trainer(cfg: DictConfig) -> L.Trainer:
    callbacks: list[Callback] = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    return instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        default_root_dir=cfg.paths.output_dir,
        plugins=[AtomicCheckpointIO()],
    )


def checkpoint_callback(trainer: L.Trainer) -> ModelCheckpoint | None:
    return trainer.checkpoint_callback if isinstance(trainer.checkpoint_callback, ModelCheckpoint) else None


def best_score(ckpt: ModelCheckpoint | None) -> float | None:
    """The monitored metric of the best checkpoint; after spawn-based DDP only its file knows it."""
    if ckpt is None or not ckpt.best_model_path:
        return None
    if ckpt.best_model_score is not None:
        return float(ckpt.best_model_score)
    states = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True).get("callbacks", {})
    scores = [s.get("best_model_score") for k, s in states.items() if k.startswith("ModelCheckpoint")]
    return float(scores[0]) if scores and scores[0] is not None else None


def show_held_out_prediction(checkpoint: str, datamodule: DetectiveDataModule, seed: int) -> None:
    """The original ended on one prediction of a random *training* image; ours is a held-out test image."""
    from detective.predict.predictor import Prediction, Predictor

    test = datamodule.splits.get("test") or []
    if not test:
        print("No test images held out: skipping the example prediction.")
        return
    sample = random.Random(seed).choice(test)
    (result,) = Predictor.from_checkpoint(checkpoint, device="cpu").predict([sample.path])
    truth = f"{sample.subject}, {'AI generated' if sample.is_ai else 'real photo'}"
    print(f"\nHeld-out test image: {sample.path}  (truth: {truth})")
    if isinstance(result, Prediction):
        print(f"  {result.describe().replace('  Source', chr(10) + '  Source')}")
    else:
        print(f"  could not predict: {result.error}")


def save_resolved_config(cfg: DictConfig) -> Path:
    """`config.yaml` in the run folder with every interpolation resolved: what this run really used."""
    path = Path(cfg.paths.output_dir) / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, path, resolve=True)
    return path


def train(cfg: DictConfig) -> float | None:
    """Fit, test the best checkpoint, print the summary; return the monitored metric for sweepers."""
    check_accelerator(cfg)
    with reusing_freed_memory(cfg.get("reuse_freed_memory", True)):
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
    score = best_score(ckpt)
    if cfg.get("test"):
        metrics = trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)
        if trainer.is_global_zero:
            report(metrics[0] if metrics else {}, best, datamodule, cfg)
    return score


def report(metrics: dict[str, Any], best: str | None, datamodule: DetectiveDataModule, cfg: DictConfig) -> None:
    """The end of every run: one held-out prediction, the test metrics, the checkpoint and how to use it."""
    if best:
        show_held_out_prediction(best, datamodule, cfg.seed)
    if metrics:
        print("\nTest metrics (best checkpoint, held-out test split):")
        for name in sorted(metrics):
            print(f"  {name:<32} {metrics[name]:.4f}")
    if best:
        example = shlex.quote(str(datamodule.splits["test"][0].path)) if datamodule.splits.get("test") else "IMAGE"
        print(f"\nBest checkpoint: {best}")
        print(f"Predict with:    {command('predict')} {example} --checkpoint {shlex.quote(best)}")
