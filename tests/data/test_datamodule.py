import torch
from conftest import balanced_names, write_image

from detective.data.datamodule import DetectiveDataModule


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
        total = sum(len(batch[0]) for batch in dm.train_dataloader())
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
