"""Plain helpers the tests share (fixtures stay in conftest.py): small image trees written on the fly."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from detective.train.config import compose_config, quick_run_overrides

REPO = Path(__file__).resolve().parents[1]


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
