"""Shared fixtures (plain helpers are in `tests.helpers`): no test needs files from outside."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from detective.train.config import compose_config
from tests.helpers import balanced_names, random_checkpoint, responsive_copy, train_overrides, write_tree


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
    """A test that needs a checkpoint trains one (once per session): it is slow, whatever file it lives in. Slow
    tests run first, so that the two workers share them and the fast ones fill the gaps, instead of one worker
    finishing a long run alone at the end."""
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: files keep their order


class SessionFixtureFailures:
    """Session fixtures whose setup raised, in the order they did, with the error's first line. Many tests share one
    (the trained checkpoint feeds dozens): the first test that needs it shows the error with its traceback, and the
    others skip, naming it, so that one broken training run reads as one error rather than dozens.

    A plugin rather than conftest hooks: pytest sets session fixtures up through the session's hooks, which do not
    reach a conftest.py below the root folder."""

    def __init__(self) -> None:
        self.failed: dict[str, str] = {}

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef) -> object:
        try:
            return (yield)
        except Exception as err:  # not pytest's skip or fail: those are outcomes, not errors
            if fixturedef.scope == "session":
                first_line = next(iter(str(err).strip().splitlines()), "")
                self.failed.setdefault(fixturedef.argname, f"{type(err).__name__}: {first_line}")
            raise

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        needed = set(getattr(item, "fixturenames", ()))
        failed = next((name for name in self.failed if name in needed), None)
        if failed is not None:
            pytest.skip(f"fixture {failed!r} failed in an earlier test's setup: {self.failed[failed]}")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SessionFixtureFailures(), "session-fixture-failures")


# Checkpoints whose answers depend on the image, and their ONNX exports, for comparing prediction paths.
RESPONSIVE = {  # hyperparameters of the one-epoch checkpoint changed for the comparisons
    # The eval transform resizes to 73, crops 64: both steps do work.
    "image_size": 64,
    "crop_fraction": 0.875,
    # Native crops smaller than most test images, so an image is judged on a grid of them (up to 8; more cover
    # the larger ones), and larger than some, which are padded.
    "source_crop": 48,
    "source_crops": 8,
    # A calibrated temperature, so that every path must apply it alike.
    "temperature": 1.7,
}
RESPONSIVE_KINDS = {  # the kinds of model: native crops, the original's downscaled view, no subject head, taps
    "native": {"source_view": "native"},
    "resized": {"source_view": "resized"},
    "source-only": {"source_view": "native", "subjects": []},
    # The source head on early blocks' statistics, every kind of them.
    "taps": {
        "source_view": "native",
        "source_taps": [3, 6],
        "source_statistics": ["mean", "std", "detail", "fineness"],
    },
}


@pytest.fixture(scope="session")
def responsive(trained_checkpoint: Path, tiny_tree: Path, tmp_path_factory) -> Callable[[str], Path]:
    """`responsive(kind)`: the one-epoch checkpoint with the `RESPONSIVE` settings, the kind's (`RESPONSIVE_KINDS`),
    and its BatchNorm statistics re-estimated on the tiny tree's views, made once per session.

    One epoch from scratch leaves BatchNorm statistics from two steps, with which the net gives every image the
    same answer, so two prediction paths would agree whatever they did to the pixels. With the statistics
    re-estimated, its answers move with the pixels (resizing with Pillow's filter, one level off in 2% of the values
    here, moves its probabilities by up to 9e-3), so agreement to 1e-4 means the same pixels and the same net."""
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in made:
            path = tmp_path_factory.mktemp(f"responsive-{kind}") / "best.ckpt"
            made[kind] = responsive_copy(trained_checkpoint, tiny_tree, path, **RESPONSIVE, **RESPONSIVE_KINDS[kind])
        return made[kind]

    return get


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory) -> Path:
    """Random weights with BatchNorm statistics from a few images (`responsive_copy`): answers that move with the
    pixels, for comparing prediction paths, in a second rather than an epoch of training."""
    folder = tmp_path_factory.mktemp("untrained")
    tree = write_tree(folder / "images", [f"{i}.png" for i in range(6)], (64, 48))
    return responsive_copy(random_checkpoint(folder / "random.ckpt", ["cat", "dog", "owl"]), tree, folder / "best.ckpt")


@pytest.fixture(scope="session")
def responsive_checkpoint(responsive: Callable[[str], Path]) -> Path:
    """The native-crop kind, with a subject head: what training makes by default."""
    return responsive("native")


@pytest.fixture(scope="session")
def exported(responsive: Callable[[str], Path], tmp_path_factory) -> Callable[[str], Path]:
    """`exported(kind)`: `responsive(kind)` exported as `predict.py --export` does it, once per session."""
    from detective.predict.onnx_export import export_onnx

    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in made:
            made[kind] = export_onnx(responsive(kind), tmp_path_factory.mktemp(f"onnx-{kind}") / "model.onnx").path
        return made[kind]

    return get


@pytest.fixture(scope="session")
def onnx_model(exported: Callable[[str], Path]) -> Path:
    return exported("native")
