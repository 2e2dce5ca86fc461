"""Plain helpers the tests share (fixtures stay in conftest.py): small image trees written on the fly."""

from __future__ import annotations

import io
import types
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detective.train.config import compose_config, quick_run_overrides

REPO = Path(__file__).resolve().parents[1]


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal, so progress bars draw into it."""

    def isatty(self) -> bool:
        return True


def write_image(path: Path, size: tuple[int, int] = (40, 30), seed: int = 0, fmt: str | None = None) -> Path:
    """Write a small random RGB image (format from the extension unless `fmt` is given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def write_tree(root: Path, files: Iterable[str], size: tuple[int, int] = (40, 30)) -> Path:
    """Write one small image per relative path under `root`."""
    for i, rel in enumerate(files):
        write_image(root / rel, size, seed=i)
    return root


def balanced_names(subjects: Iterable[str] = ("cat", "dog"), per_cell: int = 10, ext: str = ".png") -> list[str]:
    """`<subject>/<subject>_<i>[ _ai].ext`, `per_cell` real and `per_cell` AI images per subject."""
    return [
        f"{s}/{s}_{i:03d}{'_ai' if ai else ''}{ext}" for s in subjects for ai in (False, True) for i in range(per_cell)
    ]


def ids(params: Iterable[object]) -> set[int]:
    """Identities of parameters: which tensors two modules or groups share."""
    return {id(p) for p in params}


def train_overrides(data_root: Path, output_dir: Path, *extra: str) -> list[str]:
    """Hydra overrides for a tiny, fast CPU run on `data_root` writing into `output_dir`."""
    return [*quick_run_overrides(data_root, output_dir), *extra]


def make_datamodule(root: Path | None, *overrides: str, **kwargs):
    """`conf/data` as train.py instantiates it, for `root` (None: the demo set), with overrides and replaced args."""
    from hydra.utils import instantiate

    cfg = compose_config([*([f"data.root={root}"] if root is not None else []), *overrides])
    return instantiate(cfg.data, **kwargs)


def make_module(subjects=("cat", "dog", "owl"), *overrides: str, **kwargs):
    """`conf/model` as train.py builds it (without pretrained weights, BatchNorm statistics re-estimated)."""
    from detective.train.module import DetectiveModule
    from detective.train.run import module_arguments

    args = module_arguments(compose_config(["data.root=photos", "data.image_size=32", *overrides]))
    args.update(freeze_batchnorm=False, cache_features=False)
    return DetectiveModule(subjects=list(subjects), **{**args, **kwargs})


def random_checkpoint(path: Path, subjects: list[str]) -> Path:
    """A checkpoint file as train.py writes it (settings and `net.` weights), with random weights, 32 px views."""
    import torch

    from detective.model.net import DetectiveNet

    hparams = {
        "subjects": subjects,
        "image_size": 32,
        "crop_fraction": 1.0,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "threshold": 0.5,
        "source_view": "native",
        "source_crop": 32,
        "source_crops": 4,
        "shared": 16,
        "subject_hidden": 8,
        "source_hidden": 8,
    }
    torch.manual_seed(0)
    net = DetectiveNet.from_hparams(hparams)
    torch.save({"hyper_parameters": hparams, "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, path)
    return path


def assert_same_records(got: list[dict], want: list[dict], tolerance: float = 1e-5) -> None:
    """`predict.py --json` records alike, path by path: the same keys and values, probabilities to `tolerance`."""
    assert [g["path"] for g in got] == [w["path"] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys(), g["path"]
        top_k = [(t["subject"], pytest.approx(t["probability"], abs=tolerance)) for t in w.get("top_k", [])]
        assert [(t["subject"], t["probability"]) for t in g.get("top_k", [])] == top_k, g["path"]
        assert {k: v for k, v in g.items() if k != "top_k"} == {
            k: pytest.approx(v, abs=tolerance) if isinstance(v, float) else v for k, v in w.items() if k != "top_k"
        }, g["path"]


def responsive_copy(trained: Path, tree: Path, path: Path, **changes: object) -> Path:
    """`trained` with its hyperparameters changed and BatchNorm re-estimated on the PNGs under `tree`, saved at
    `path`; the weights of heads the changed net lacks are dropped (a source-only run has no subject head), those it
    adds start random. Why: see the `responsive` fixture."""
    from dataclasses import asdict

    import torch
    from torch import nn

    from detective.data.dataset import collate_views
    from detective.data.geometry import ViewSettings
    from detective.data.transforms import load_image
    from detective.data.views import eval_views
    from detective.model.net import DetectiveNet
    from detective.predict.checkpoint import NET_PREFIX

    raw = torch.load(trained, map_location="cpu", weights_only=True)
    hparams = {**raw["hyper_parameters"], **changes}
    torch.manual_seed(0)  # a source head on taps that `trained` lacks starts from random weights
    net = DetectiveNet.from_hparams(hparams)
    state = {k[len(NET_PREFIX) :]: v for k, v in raw["state_dict"].items() if k.startswith(NET_PREFIX)}
    fits = net.state_dict()  # heads the changed net lacks (no subjects), or has in another size (other taps), go
    kept = {k: v for k, v in state.items() if k in fits and fits[k].shape == v.shape}
    missing = net.load_state_dict(kept, strict=False).missing_keys
    assert all(k.startswith("source_shared.") for k in missing), missing
    views = eval_views(**asdict(ViewSettings.from_hparams(hparams)))
    batch = collate_views(*zip(*(views(load_image(p)) for p in sorted(tree.rglob("*.png"))), strict=True))
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average over what the backbone sees: images and crops alike
    with torch.no_grad():
        net.train()(*batch)
    raw["hyper_parameters"] = hparams
    raw["state_dict"] = {NET_PREFIX + k: v for k, v in net.eval().state_dict().items()}
    torch.save(raw, path)
    return path


class FakeGlibc:
    """Stands in for glibc's malloc knobs: every `mallopt` succeeds, `malloc_trim` calls are counted, and
    `mallinfo2` (absent with `free=None`, as before glibc 2.33) reports `free` bytes lying free in the heap."""

    def __init__(self, free: int | None = None) -> None:
        self.trims = 0
        if free is not None:
            self.mallinfo2 = lambda: types.SimpleNamespace(fordblks=free)

    def mallopt(self, parameter: int, value: int) -> int:
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.trims += 1
        return 1
