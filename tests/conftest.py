"""Shared fixtures (plain helpers are in `tests.helpers`): no test needs files from outside."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from detective.train.config import compose_config
from tests.helpers import balanced_names, train_overrides, write_tree


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterable[Path]:
    """The demo set and decoded images go to a per-session folder, not the user's ~/.cache (subprocesses too)."""
    folder = tmp_path_factory.mktemp("detective-cache")
    before = os.environ.get("DETECTIVE_CACHE")
    os.environ["DETECTIVE_CACHE"] = str(folder)
    yield folder
    if before is None:
        del os.environ["DETECTIVE_CACHE"]
    else:
        os.environ["DETECTIVE_CACHE"] = before


@pytest.fixture
def image_tree(tmp_path: Path) -> Callable[..., Path]:
    """Build a labelled tree: `image_tree(names, size=...)` returns its root."""

    def build(names: Iterable[str] | None = None, size: tuple[int, int] = (40, 30), root: Path | None = None) -> Path:
        return write_tree(root or tmp_path / "data", names if names is not None else balanced_names(), size)

    return build


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory) -> Path:
    """Three subjects, real and AI, 8 of each: small enough to train on in seconds."""
    return write_tree(tmp_path_factory.mktemp("tiny") / "data", balanced_names(("cat", "dog", "owl"), 8), (48, 40))


@pytest.fixture(scope="session")
def trained_checkpoint(tiny_tree: Path, tmp_path_factory) -> Path:
    """A best checkpoint from one epoch of real training through `detective.train.run.train`."""
    from detective.train.run import train

    out = tmp_path_factory.mktemp("run")
    train(compose_config(train_overrides(tiny_tree, out)))
    return out / "checkpoints" / "best.ckpt"


# Checkpoints whose answers depend on the image, and their ONNX export, for comparing prediction paths.
RESPONSIVE_SIZE, RESPONSIVE_CROP = 64, 0.875  # resize to 73, crop 64: both steps of the eval transform do work


@pytest.fixture(scope="session")
def responsive_checkpoint(trained_checkpoint: Path, tiny_tree: Path, tmp_path_factory) -> Path:
    """The one-epoch checkpoint with its BatchNorm statistics re-estimated on the tiny tree, and a 64 px crop.

    One epoch from scratch leaves BatchNorm statistics from two steps, with which the net gives every image the
    same answer, so two prediction paths would agree whatever they did to the pixels. With the statistics
    re-estimated, its answers move with the pixels (resizing with Pillow's filter, one level off in 2% of the values
    here, moves its probabilities by up to 9e-3), so agreement to 1e-4 means the same pixels and the same net."""
    import torch
    from torch import nn

    from detective.data.transforms import eval_transform, load_image
    from detective.model.net import DetectiveNet
    from detective.predict.checkpoint import NET_PREFIX

    raw = torch.load(trained_checkpoint, map_location="cpu", weights_only=True)
    hparams = {**raw["hyper_parameters"], "image_size": RESPONSIVE_SIZE, "crop_fraction": RESPONSIVE_CROP}
    net = DetectiveNet.from_hparams(hparams)
    net.load_state_dict({k[len(NET_PREFIX) :]: v for k, v in raw["state_dict"].items() if k.startswith(NET_PREFIX)})
    transform = eval_transform(RESPONSIVE_SIZE, RESPONSIVE_CROP)
    images = torch.stack([transform(load_image(p)) for p in sorted(tiny_tree.rglob("*.png"))])
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the batch
    with torch.no_grad():
        net.train()(images)
    raw["hyper_parameters"] = hparams
    raw["state_dict"] = {NET_PREFIX + k: v for k, v in net.eval().state_dict().items()}
    path = tmp_path_factory.mktemp("responsive") / "best.ckpt"
    torch.save(raw, path)
    return path


@pytest.fixture(scope="session")
def onnx_model(responsive_checkpoint: Path, tmp_path_factory) -> Path:
    """`responsive_checkpoint` exported as `predict.py --export` does it."""
    from detective.predict.onnx_export import export_onnx

    return export_onnx(responsive_checkpoint, tmp_path_factory.mktemp("onnx") / "model.onnx").path
