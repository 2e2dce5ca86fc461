"""Hydra glue: the resolvers the YAML files use, and turning config nodes into plain values."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from detective.commands import command

DEMO_OVERRIDE = "experiment=demo"


def demo_by_default(overrides: Sequence[str]) -> list[str]:
    """`overrides` plus `experiment=demo` when they name neither a `data.root` nor an experiment: with no data of
    your own, `train.py` trains on the built-in demo set with the recipe that suits it."""
    keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}
    return list(overrides) if keys & {"data.root", "experiment"} else [*overrides, DEMO_OVERRIDE]


def register_resolvers() -> None:
    """Register `${run_id:}` and `${command:NAME}` (how to run `NAME`, for --help) once; safe to call again (DDP
    workers, tests)."""
    if not OmegaConf.has_resolver("command"):
        OmegaConf.register_new_resolver("command", command)
    if not OmegaConf.has_resolver("run_id"):
        # Cached: the run folder's name must not change between two reads of the same config.
        OmegaConf.register_new_resolver("run_id", lambda: secrets.token_hex(3), use_cache=True)


def plain(node: Any) -> Any:
    """DictConfig/ListConfig -> dicts/lists of plain values (what `save_hyperparameters` should hold)."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


CONF_MODULE = "detective.conf"  # `conf/`, installed as this package (pyproject.toml), so an installed wheel finds it


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """`conf/train.yaml` composed with command-line style overrides (`demo_by_default`, as `train.py` does), for
    training from Python (`detective.train.run.train(compose_config([...]))`); set `paths.output_dir`, as no Hydra
    run folder exists."""
    from hydra import compose, initialize_config_module

    register_resolvers()
    with initialize_config_module(CONF_MODULE, version_base="1.3"):
        return compose("train", overrides=demo_by_default(overrides))


def quick_run_overrides(data_root: Path, output_dir: Path, image_size: int = 32) -> list[str]:
    """Overrides for a one-epoch, from-scratch CPU run without progress bars: tests and benchmarks."""
    return [
        f"data.root={data_root}",
        f"data.image_size={image_size}",
        "data.crop_fraction=1.0",
        "data.batch_size=16",
        "data.num_workers=0",
        "data.augment.crop=center",
        "model.pretrained=false",
        "model.freeze_epochs=0",
        "trainer.max_epochs=1",
        "trainer.enable_model_summary=false",
        "~callbacks.progress_bar",
        f"paths.output_dir={output_dir}",
    ]
