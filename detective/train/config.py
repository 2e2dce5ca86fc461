"""Hydra glue: the resolvers the YAML files use, and turning config nodes into plain values."""

from __future__ import annotations

import secrets
from typing import Any

from omegaconf import DictConfig, OmegaConf


def _demo(on_demo: Any, on_own_data: Any, *, _root_: DictConfig) -> Any:
    """`${demo:A,B}`: A when training on the built-in demo set (`data.root` is null), else B."""
    return on_demo if OmegaConf.select(_root_, "data.root") is None else on_own_data


def register_resolvers() -> None:
    """Register `${demo:A,B}` and `${run_id:}` once; safe to call again (DDP workers, tests)."""
    if not OmegaConf.has_resolver("demo"):
        OmegaConf.register_new_resolver("demo", _demo)
    if not OmegaConf.has_resolver("run_id"):
        # Cached: the run folder's name must not change between two reads of the same config.
        OmegaConf.register_new_resolver("run_id", lambda: secrets.token_hex(3), use_cache=True)


def plain(node: Any) -> Any:
    """DictConfig/ListConfig -> dicts/lists of plain values (what `save_hyperparameters` should hold)."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
