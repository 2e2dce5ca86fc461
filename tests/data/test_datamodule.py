import torch

from detective.data.datamodule import DetectiveDataModule
from tests.helpers import balanced_names, write_image


def make_module(root, **kwargs) -> DetectiveDataModule:
    args = {"image_size": 32, "batch_size": 8, "num_workers": 0, "augment": {"crop": "random"}, **kwargs}
    return DetectiveDataModule(root=str(root), **args)


def test_batches_are_uint8_images_with_subject_and_source_labels(image_tree, capsys):
    dm = make_module(image_tree(balanced_names(("cat", "dog"), 6), size=(64, 48)))
    dm.setup()
    assert "Data audit" in capsys.readouterr().out
    assert dm.subjects == ["cat", "dog"]
    images, subjects, sources = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32)
    assert subjects.dtype == torch.long and sources.dtype == torch.float32
    seen = {(int(s), float(a)) for _, ss, aa in dm.val_dataloader() for s, a in zip(ss, aa, strict=True)}
    assert seen == {(0, 0.0), (0, 1.0), (1, 0.0), (1, 1.0)}  # every cell is validated


def test_a_file_that_breaks_mid_epoch_is_reported_once_and_dropped(image_tree, capsys):
    root = image_tree(balanced_names(("cat", "dog"), 6), size=(64, 48))
    good = write_image(root / "cat" / "truncated.jpg", (200, 150), seed=9).read_bytes()
    (root / "cat" / "truncated.jpg").write_bytes(good[: len(good) // 2])  # the header still probes fine
    dm = make_module(root, val_fraction=0.0, test_fraction=0.0)
    dm.setup()
    assert any(s.path.name == "truncated.jpg" for s in dm.splits["train"])
    for _ in range(2):  # two epochs: no exception, one sample fewer
        # A batch holding only the broken file comes out as None (the training step skips it).
        total = sum(len(batch[0]) for batch in dm.train_dataloader() if batch is not None)
        assert total == len(dm.splits["train"]) - 1
    err = capsys.readouterr().err
    assert err.count("truncated.jpg") == 1 and "cannot read image" in err


def test_demo_set_is_the_default_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTIVE_CACHE", str(tmp_path))
    dm = DetectiveDataModule(image_size=32, crop_fraction=1.0, num_workers=0, demo={"per_subject": 4})
    dm.prepare_data()
    dm.setup()
    assert dm.subjects == ["circle", "square", "star", "triangle"]
    assert str(dm.scan.root).startswith(str(tmp_path))


def test_batches_come_in_channels_last_and_collate_in_workers_too(image_tree):
    dm = make_module(image_tree(balanced_names(("cat", "dog"), 4), size=(64, 48)), num_workers=1)
    dm.setup()
    images, _, _ = next(iter(dm.val_dataloader()))
    assert images.is_contiguous(memory_format=torch.channels_last)  # what the model runs on: no transpose


def test_decoded_cache_serves_later_epochs_with_the_same_batches(image_tree, tmp_path):
    root = image_tree(balanced_names(("cat", "dog"), 4), size=(64, 48))
    cached = make_module(root, decoded_cache=True, cache_dir=str(tmp_path / "decoded"))
    plain = make_module(root)
    for dm in (cached, plain):
        dm.setup()
    first = [b[0] for b in cached.val_dataloader()]
    assert len(list((tmp_path / "decoded").rglob("*.rgb"))) == len(cached.splits["val"])  # filled by the 1st pass
    for epoch in ([b[0] for b in cached.val_dataloader()], [b[0] for b in plain.val_dataloader()]):
        assert all(torch.equal(a, b) for a, b in zip(first, epoch, strict=True))
