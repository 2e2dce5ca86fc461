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


TRAINING_FIXTURES = {"trained_checkpoint"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs a checkpoint trains one (once per session): it is slow, whatever file it lives in."""
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
