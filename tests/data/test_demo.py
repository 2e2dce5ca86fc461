import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import detective.data.demo as demo
from detective.data.demo import DEMO_SUBJECTS, MARKER_NAME, demo_root, make_demo_dataset
from detective.data.labels import is_ai_name
from detective.data.scan import scan_folder
from detective.data.shortcut import shortcut_check

SMALL = {"per_subject": 8, "image_size": 32}


def hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.jpg"))}


def period2_score(path: Path) -> float:
    """Phase-consistent period-2 energy of the neighbour differences, relative to their size.

    A checkerboard adds the same alternating offset to every neighbour difference, so the
    alternating-sign mean keeps it while content and sensor noise average out.
    """
    y = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    dx, dy = np.diff(y, axis=1), np.diff(y, axis=0)
    sx = abs((dx * (-1.0) ** np.arange(dx.shape[1])).mean())
    sy = abs((dy * (-1.0) ** np.arange(dy.shape[0])[:, None]).mean())
    return (sx + sy) / (np.abs(dx).mean() + np.abs(dy).mean())


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "set", seed=3, per_subject=40, image_size=64)


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    first = hashes(make_demo_dataset(tmp_path / "a", seed=5, **SMALL))
    second = hashes(make_demo_dataset(tmp_path / "b", seed=5, **SMALL))
    other = hashes(make_demo_dataset(tmp_path / "c", seed=6, **SMALL))
    assert first == second
    assert first.keys() == other.keys()
    assert all(first[k] != other[k] for k in first)


def test_has_the_promised_subjects_counts_and_sources(demo_set):
    assert len(DEMO_SUBJECTS) >= 3
    assert sorted(p.name for p in demo_set.iterdir() if p.is_dir()) == sorted(DEMO_SUBJECTS)
    for subject in DEMO_SUBJECTS:
        names = [p.name for p in (demo_set / subject).iterdir()]
        assert len(names) == 40
        assert all(n.startswith(f"{subject}_") and n.endswith(".jpg") for n in names)
        assert sum(is_ai_name(n) for n in names) == 20


def test_real_and_ai_share_format_size_and_jpeg_tables(demo_set):
    # A data audit warns when the sources differ in file format or size; the demo must not trip it.
    seen = set()
    for path in demo_set.rglob("*.jpg"):
        with Image.open(path) as img:
            seen.add((img.format, img.size, img.mode, str(img.quantization)))
    assert len(seen) == 1
    assert next(iter(seen))[:3] == ("JPEG", (64, 64), "RGB")


def test_ai_names_use_the_token_rule(demo_set):
    for path in demo_set.rglob("*.jpg"):
        assert is_ai_name(path.name) == path.stem.endswith("_ai")
    assert not any(is_ai_name(s) for s in DEMO_SUBJECTS)


@pytest.mark.parametrize("fraction, expected", [(0.0, 0), (0.25, 2), (1.0, 8)])
def test_ai_fraction_sets_the_ai_count(tmp_path, fraction, expected):
    root = make_demo_dataset(tmp_path / "d", ai_fraction=fraction, **SMALL)
    for subject in DEMO_SUBJECTS:
        assert sum(is_ai_name(p.name) for p in (root / subject).iterdir()) == expected


def test_ai_trace_survives_jpeg(demo_set):
    # The source signal: if a change to the generator or the JPEG step erased it, training would be at chance.
    ai = [period2_score(p) for p in demo_set.rglob("*.jpg") if is_ai_name(p.name)]
    real = [period2_score(p) for p in demo_set.rglob("*.jpg") if not is_ai_name(p.name)]
    assert np.median(ai) > 5 * np.percentile(real, 90)
    assert np.mean(np.array(ai)[:, None] > np.array(real)[None, :]) > 0.95  # AUC of this one statistic


def test_file_size_does_not_give_the_source_away(demo_set):
    # The photographs' noise costs about as many JPEG bytes as the generator's grid: the audit's shortcut check (a
    # classifier on metadata, bytes per pixel among it) must find nothing to learn from on the demo set.
    check = shortcut_check(scan_folder(demo_set).samples)
    assert check.auroc is not None and check.auroc < 0.75
    assert check.feature_aurocs["bytes per pixel"] < 0.7


def test_demo_root_uses_cache_dir_and_does_not_regenerate(tmp_path, monkeypatch):
    root = demo_root(1, cache_dir=tmp_path, **SMALL)
    assert root.parent == tmp_path and (root / MARKER_NAME).is_file()
    before = hashes(root)

    def fail(*args, **kwargs):
        raise AssertionError("regenerated a cached demo set")

    monkeypatch.setattr(demo, "_write_set", fail)
    assert demo_root(1, cache_dir=tmp_path, **SMALL) == root
    assert hashes(root) == before


def test_demo_root_keys_the_folder_by_parameters(tmp_path):
    roots = {demo_root(0, cache_dir=tmp_path, **SMALL), demo_root(1, cache_dir=tmp_path, **SMALL)}
    roots.add(demo_root(0, cache_dir=tmp_path, per_subject=8, image_size=16))
    assert len(roots) == 3


def test_demo_root_defaults_to_detective_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTIVE_CACHE", str(tmp_path / "env-cache"))
    assert demo_root(**SMALL).parent == tmp_path / "env-cache"


def test_interrupted_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    real_make_image = demo.make_image
    calls = []

    def interrupted(*args):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return real_make_image(*args)

    monkeypatch.setattr(demo, "make_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_demo_dataset(tmp_path / "set", **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_losing_a_race_keeps_the_winners_set(tmp_path, monkeypatch):
    # Another process (DDP rank, sweep job) finishes the same set while this one is still writing.
    expected = hashes(make_demo_dataset(tmp_path / "reference", **SMALL))
    root = tmp_path / "race" / "set"
    real_write = demo._write_set

    def racing(folder, params):
        monkeypatch.setattr(demo, "_write_set", real_write)
        make_demo_dataset(root, **SMALL)  # the winner
        real_write(folder, params)

    monkeypatch.setattr(demo, "_write_set", racing)
    assert make_demo_dataset(root, **SMALL) == root
    assert hashes(root) == expected
    assert [p.name for p in root.parent.iterdir()] == ["set"]  # the loser's temporary copy is gone


def test_refuses_to_write_over_other_files(tmp_path):
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="delete it or pick another folder"):
        make_demo_dataset(tmp_path / "set", **SMALL)
    assert (tmp_path / "set" / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "kwargs", [{"seed": -1}, {"per_subject": 0}, {"image_size": 33}, {"image_size": 8}, {"ai_fraction": 1.5}]
)
def test_bad_parameters_fail_with_a_clear_message(tmp_path, kwargs):
    with pytest.raises(ValueError, match="demo "):
        make_demo_dataset(tmp_path / "set", **{**SMALL, **kwargs})
    assert not (tmp_path / "set").exists()
