"""Pretrained backbone weights: torchvision's ImageNet file (its cache, else a download) or a local state dict.

There is no silent fallback to random weights: when none can be had, one error names every fix. The net itself
is always built without weights, so reloading a trained checkpoint never needs this module or the network.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor
from torchvision.models import MobileNet_V2_Weights, WeightsEnum

from detective.model.net import DetectiveNet

# Backbone name -> (torchvision ImageNet weights, prefix of the backbone's keys in that model's state dict).
IMAGENET_WEIGHTS: dict[str, tuple[WeightsEnum, str]] = {
    "mobilenet_v2": (MobileNet_V2_Weights.IMAGENET1K_V1, "features."),
}

# What reading or downloading a weights file raises: network failures (URLError, HTTPError, timeouts are all
# OSErrors), a bad download hash (RuntimeError), a truncated or non-tensor pickle.
_LOAD_ERRORS = (OSError, RuntimeError, EOFError, pickle.UnpicklingError)


class PretrainedWeightsError(RuntimeError):
    """The requested backbone weights cannot be loaded; the message names the file and the fix."""


def load_backbone_weights(net: DetectiveNet, *, pretrained: bool, weights_path: str | Path | None) -> str:
    """Load backbone weights into `net` and return a one-line description of what was loaded.

    `weights_path` (a torchvision state dict, full or backbone-only) is the explicit choice, so it is loaded
    whatever `pretrained` says; without it, `pretrained` picks between
    torchvision's ImageNet file and the random init.
    """
    if weights_path is not None:
        path = Path(weights_path).expanduser().resolve()
        _load_into(net, _backbone_part(_read_state_dict(path), net.backbone_name), f"weights file {path}")
        return f"local file {path}"
    if not pretrained:
        return "random init (pretrained=false)"
    cache = imagenet_cache_path(net.backbone_name)
    was_cached = cache.is_file()
    _load_into(net, _imagenet_state_dict(net.backbone_name, cache, was_cached), f"cached ImageNet weights {cache}")
    if was_cached:
        return f"ImageNet weights from torchvision cache ({cache})"
    return f"ImageNet weights downloaded to torchvision cache ({cache})"


def imagenet_cache_path(backbone: str) -> Path:
    """Where torchvision looks for (and downloads) the ImageNet file: `$TORCH_HOME/hub/checkpoints/<url name>`."""
    weights, _ = _imagenet_entry(backbone)
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def _imagenet_entry(backbone: str) -> tuple[WeightsEnum, str]:
    try:
        return IMAGENET_WEIGHTS[backbone]
    except KeyError:
        raise PretrainedWeightsError(
            f"no ImageNet weights are known for backbone {backbone!r}; "
            "pass model.weights_path=/path/to/state_dict.pth, or train from scratch with model.pretrained=false"
        ) from None


def _imagenet_state_dict(backbone: str, cache: Path, was_cached: bool) -> Mapping[str, object]:
    weights, _ = _imagenet_entry(backbone)
    try:
        # Reads `cache` when present, else downloads it there (hash-checked against the file name).
        state = weights.get_state_dict(progress=False, check_hash=True, map_location="cpu", weights_only=True)
    except _LOAD_ERRORS as err:
        if was_cached:
            raise PretrainedWeightsError(
                f"cannot read the cached ImageNet weights {cache} ({_brief(err)}); delete the file to download it "
                f"again, pass model.weights_path=/path/to/{backbone}.pth, or train from scratch with "
                "model.pretrained=false"
            ) from err
        raise PretrainedWeightsError(
            f"ImageNet weights for {backbone} are not cached at {cache} and could not be downloaded ({_brief(err)}); "
            f"either pass model.weights_path=/path/to/{backbone}.pth (a torchvision state dict), place the file at "
            f"{cache}, or train from scratch with model.pretrained=false"
        ) from err
    return _backbone_part(_check_mapping(state, f"cached ImageNet weights {cache}"), backbone)


def _read_state_dict(path: Path) -> Mapping[str, object]:
    if not path.is_file():
        raise PretrainedWeightsError(
            f"weights file {path} does not exist; fix model.weights_path, or train from scratch with "
            "model.pretrained=false"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except _LOAD_ERRORS as err:
        raise PretrainedWeightsError(
            f"cannot read weights file {path} ({_brief(err)}); model.weights_path needs a state dict saved with "
            "torch.save(model.state_dict(), path)"
        ) from err
    return _check_mapping(state, f"weights file {path}")


def _check_mapping(state: object, source: str) -> Mapping[str, object]:
    if not isinstance(state, Mapping):
        raise PretrainedWeightsError(
            f"{source} holds a {type(state).__name__}, not a state dict; save one with "
            "torch.save(model.state_dict(), path)"
        )
    return state


def _backbone_part(state: Mapping[str, object], backbone: str) -> Mapping[str, object]:
    """A full torchvision state dict's backbone entries, prefix stripped; a backbone-only dict as it is."""
    prefix = IMAGENET_WEIGHTS[backbone][1] if backbone in IMAGENET_WEIGHTS else None
    if prefix is None or not any(key.startswith(prefix) for key in state):
        return state
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


def _load_into(net: DetectiveNet, state: Mapping[str, object], source: str) -> None:
    problems = _mismatch(net.backbone.state_dict(), state)
    if problems:
        raise PretrainedWeightsError(
            f"{source} does not fit the {net.backbone_name} backbone ({problems}); use a torchvision "
            f"{net.backbone_name} state dict (full, or backbone-only), or train from scratch with "
            "model.pretrained=false"
        )
    net.backbone.load_state_dict(state, strict=True)


def _mismatch(expected: Mapping[str, Tensor], given: Mapping[str, object]) -> str:
    """A short summary of how `given` differs from `expected` in keys, value types and shapes; "" if it fits."""
    parts = []
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    not_tensors = [k for k in given if k in expected and not isinstance(given[k], Tensor)]
    if missing:
        parts.append(f"{len(missing)} missing keys, e.g. {missing[0]!r}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys, e.g. {unexpected[0]!r}")
    if not_tensors:
        parts.append(f"{len(not_tensors)} values are not tensors, e.g. {not_tensors[0]!r}")
    wrong_shape = [k for k in expected if isinstance(given.get(k), Tensor) and given[k].shape != expected[k].shape]
    if wrong_shape:
        k = wrong_shape[0]
        parts.append(
            f"{len(wrong_shape)} shapes differ, e.g. {k!r}: {list(given[k].shape)} in file, "
            f"{list(expected[k].shape)} in model"
        )
    return "; ".join(parts)


def _brief(err: BaseException) -> str:
    """One line for an exception inside another message."""
    lines = str(err).strip().splitlines()
    text = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."
