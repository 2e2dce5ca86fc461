import logging
import re

import pytest
import torch

from detective.data.audit import DataError
from detective.data.geometry import crop_grid
from detective.data.transforms import load_image
from tests.helpers import balanced_names, make_datamodule, write_image


def make_module(root, *overrides: str, **kwargs):
    small = ("data.image_size=32", "data.batch_size=8", "data.num_workers=0", "data.augment.crop=random")
    return make_datamodule(root, *small, *overrides, **kwargs)


def test_batches_are_uint8_images_with_subject_and_source_labels(image_tree, caplog):
    caplog.set_level(logging.INFO)
    dm = make_module(image_tree(balanced_names(("cat", "dog"), 6), size=(64, 48)))
    dm.setup()
    assert "Data audit" in caplog.text
    assert dm.subjects == ["cat", "dog"]
    batch = next(iter(dm.train_dataloader()))
    assert batch.images.dtype == torch.uint8 and batch.images.shape[1:] == (3, 32, 32)
    assert batch.subjects.dtype == torch.long and batch.sources.dtype == torch.float32
    seen = {(int(s), float(a)) for b in dm.val_dataloader() for s, a in zip(b.subjects, b.sources, strict=True)}
    assert seen == {(0, 0.0), (0, 1.0), (1, 0.0), (1, 1.0)}  # every cell is validated


def test_the_source_head_gets_one_random_native_crop_in_training_and_a_grid_when_judged(image_tree):
    dm = make_module(
        image_tree(balanced_names(("cat", "dog"), 6), size=(64, 48)),
        "data.augment.flip=false",
        "data.source_train_crops=1",
    )
    dm.setup()
    train = next(iter(dm.train_dataloader()))
    assert train.crops.shape == (len(train.sources), 3, 32, 32) and train.owner.tolist() == list(range(8))
    val = next(iter(dm.val_dataloader()))
    boxes = crop_grid(64, 48, 32, 16)
    assert len(boxes) == 4 and val.owner.tolist() == [i for i in range(len(val.sources)) for _ in boxes]
    image = load_image(dm.dataset("val").samples[0].path)
    for crop, (left, top) in zip(val.crops[:4], boxes, strict=True):  # pixels as decoded: nothing resampled
        assert torch.equal(crop, image[:, top : top + 32, left : left + 32])
    x = train.crops[0]
    assert any(  # the training crop too is a window of some image, unchanged
        torch.equal(x, im[:, y : y + 32, left : left + 32])
        for im in (load_image(s.path) for s in dm.dataset("train").samples)
        for y in range(17)
        for left in range(33)
    )


def test_several_training_crops_per_image_are_different_windows_of_that_image(image_tree):
    root = image_tree(balanced_names(("cat", "dog"), 6), size=(64, 48))
    dm = make_module(root, "data.augment.flip=false", "data.source_train_crops=3", "data.batch_size=2")
    dm.setup()
    sample = dm.dataset("train").samples[0]
    torch.manual_seed(0)
    _, crops = dm.dataset("train").views(load_image(sample.path))
    assert crops.shape == (3, 3, 32, 32)
    image = load_image(sample.path)
    windows = {
        (left, y)
        for left in range(33)
        for y in range(17)
        for c in crops
        if torch.equal(c, image[:, y : y + 32, left : left + 32])
    }
    assert len(windows) == 3  # each placed on its own
    batch = next(iter(dm.train_dataloader()))
    assert batch.owner.tolist() == [0, 0, 0, 1, 1, 1]  # each image's crops average into its one source logit


def test_source_only_folders_give_batches_without_subject_view(image_tree):
    names = [f"real/r{i}.png" for i in range(8)] + [f"ai/a{i}.png" for i in range(8)]
    dm = make_module(image_tree(names, size=(40, 40)))
    dm.setup()
    assert dm.subjects == []
    batch = next(iter(dm.val_dataloader()))
    assert batch.images is None and batch.crops.shape[1:] == (3, 32, 32)


def test_resized_source_view_is_the_originals_single_view(image_tree):
    dm = make_module(image_tree(balanced_names(("cat", "dog"), 4), size=(64, 48)), "data.source_view=resized")
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    assert batch.crops is None and batch.owner is None and batch.images.shape[1:] == (3, 32, 32)


def test_a_file_that_breaks_mid_epoch_is_reported_once_and_dropped(image_tree, caplog):
    root = image_tree(balanced_names(("cat", "dog"), 6), size=(64, 48))
    good = write_image(root / "cat" / "truncated.jpg", (200, 150), seed=9).read_bytes()
    (root / "cat" / "truncated.jpg").write_bytes(good[: len(good) // 2])  # the header still probes fine
    dm = make_module(root, "data.val_fraction=0.0", "data.test_fraction=0.0")
    dm.setup()
    assert any(s.path.name == "truncated.jpg" for s in dm.splits["train"])
    for _ in range(2):  # two epochs: no exception, one sample fewer
        # A batch holding only the broken file comes out as None (the training step skips it).
        total = sum(len(batch.sources) for batch in dm.train_dataloader() if batch is not None)
        assert total == len(dm.splits["train"]) - 1
    assert caplog.text.count("truncated.jpg") == 1 and "cannot read image" in caplog.text


def test_demo_set_is_the_default_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTIVE_CACHE", str(tmp_path))
    dm = make_datamodule(None, "data.image_size=32", "data.num_workers=0", "data.demo.per_subject=4")
    dm.prepare_data()
    dm.setup()
    assert dm.subjects == ["circle", "square", "star", "triangle"]
    assert str(dm.scans[0].root).startswith(str(tmp_path))


def test_batches_come_in_channels_last_and_collate_in_workers_too(image_tree):
    dm = make_module(image_tree(balanced_names(("cat", "dog"), 4), size=(64, 48)), "data.num_workers=1")
    dm.setup()
    batch = next(iter(dm.val_dataloader()))
    for images in (batch.images, batch.crops):  # what the model runs on: no transpose
        assert images.is_contiguous(memory_format=torch.channels_last)


def test_decoded_cache_serves_later_epochs_with_the_same_batches(image_tree, tmp_path):
    root = image_tree(balanced_names(("cat", "dog"), 4), size=(64, 48))
    resized = "data.source_view=resized"  # native crops need the full image, which the cache does not keep
    assert make_module(root, "data.decoded_cache=true").cache is None
    cached = make_module(root, resized, "data.decoded_cache=true", f"data.cache_dir={tmp_path / 'decoded'}")
    plain = make_module(root, resized, "data.decoded_cache=false")
    for dm in (cached, plain):
        dm.setup()
    first = [b.images for b in cached.val_dataloader()]
    assert len(list((tmp_path / "decoded").rglob("*.rgb"))) == len(cached.splits["val"])  # filled by the 1st pass
    for epoch in ([b.images for b in cached.val_dataloader()], [b.images for b in plain.val_dataloader()]):
        assert all(torch.equal(a, b) for a, b in zip(first, epoch, strict=True))


def test_the_grid_as_training_view_shows_training_what_is_judged(image_tree):
    root = image_tree(balanced_names(("cat", "dog"), 6), size=(64, 48))
    dm = make_module(root, "data.augment.flip=false", "data.source_train_crops=grid", "data.augment.crop=center")
    dm.setup()
    assert dm.deterministic  # the same crops every epoch: a frozen backbone's statistics can be cached
    sample = dm.dataset("train").samples[0]
    _, train_crops = dm.dataset("train").views(load_image(sample.path))
    _, judged = dm.dataset("val").views(load_image(sample.path))
    assert train_crops.shape == (4, 3, 32, 32) and torch.equal(train_crops, judged)


def test_several_roots_keep_their_own_layouts_and_splits(image_tree, tmp_path):
    given = image_tree(
        [f"{split}/{n}" for split, per in (("train", 6), ("val", 2)) for n in balanced_names(("cat", "dog"), per)],
        root=tmp_path / "given",
    ).resolve()
    hashed = image_tree(balanced_names(("cat", "owl"), 10), root=tmp_path / "hashed").resolve()
    both, alone = make_module(None, f"data.root=[{given},{hashed}]"), make_module(hashed)
    for dm in (both, alone):
        dm.setup()
    assert both.subjects == ["cat", "dog", "owl"]
    for split in ("train", "val", "test"):  # the hashed root's files split as when it is trained alone
        assert [s for s in both.splits[split] if s.path.is_relative_to(hashed)] == alone.splits[split]
    from_given = {split: [s for s in both.splits[split] if s.path.is_relative_to(given)] for split in both.splits}
    assert {s.split for s in from_given["val"]} == {"val"} and len(from_given["val"]) == 8  # as given, not carved
    assert len(from_given["test"]) == 4  # no test folder: carved out of its train folder, one per cell
    assert len(alone.splits["val"]) == len(alone.splits["test"]) == 8  # 15% of each of 4 cells of 10


def test_a_list_of_one_root_is_that_root(image_tree):
    root = image_tree(balanced_names(("cat", "dog"), 6))
    listed, plain = make_module(None, f"data.root=[{root}]"), make_module(root)
    for dm in (listed, plain):
        dm.setup()
    assert listed.splits == plain.splits and listed.report == plain.report and listed.report.parts == []


def test_a_missing_root_among_several_is_a_one_line_error_naming_it(image_tree, tmp_path):
    dm = make_module(None, f"data.root=[{image_tree()},{tmp_path / 'nowhere'}]")
    with pytest.raises(FileNotFoundError, match=re.escape(f"data root not found: {tmp_path / 'nowhere'} ")) as err:
        dm.setup()
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match=r"data\.root is an empty list"):
        make_module(None, "data.root=[]").setup()
