"""Shared test helpers: small image trees written on the fly (no test needs files from outside)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

WriteImage = Callable[..., Path]


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


@pytest.fixture
def image_tree(tmp_path: Path) -> Callable[..., Path]:
    """Build a labelled tree: `image_tree(names, size=...)` returns its root."""

    def build(names: Iterable[str] | None = None, size: tuple[int, int] = (40, 30), root: Path | None = None) -> Path:
        return write_tree(root or tmp_path / "data", names if names is not None else balanced_names(), size)

    return build
