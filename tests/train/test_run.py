import pytest
import torch

from detective.data.datamodule import DetectiveDataModule
from detective.predict.checkpoint import read_checkpoint
from detective.train.config import compose_config
from detective.train.module import DetectiveModule
from detective.train.run import resolve_cache_features


def test_tiny_fit_writes_best_and_last_checkpoints(trained_checkpoint):
    assert trained_checkpoint.is_file()
    assert (trained_checkpoint.parent / "last.ckpt").is_file()
    assert not list(trained_checkpoint.parent.glob(".*.tmp"))  # atomic saves leave no temp files


def test_checkpoint_reloads_with_no_extra_arguments(trained_checkpoint):
    module = DetectiveModule.load_from_checkpoint(trained_checkpoint, map_location="cpu")
    assert module.subjects == ["cat", "dog", "owl"]
    assert module.hparams.image_size == 32
    assert 0.0 <= module.threshold <= 1.0
    subject_logits, source_logits = module.eval()(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    assert subject_logits.shape == (2, 3) and source_logits.shape == (2,)


def test_checkpoint_holds_plain_values_only(trained_checkpoint):
    info = read_checkpoint(trained_checkpoint)  # weights_only loading: it would refuse any pickled object
    assert info.subjects == ["cat", "dog", "owl"]
    assert {"image_size", "crop_fraction", "mean", "std", "threshold", "backbone"} <= set(info.hparams)


@pytest.mark.parametrize(
    ("augment", "expected"),
    [({"crop": "center", "flip": False}, True), ({"crop": "center", "flip": True}, False), ({}, False)],
)
def test_cache_features_auto_only_when_every_epoch_shows_the_same_pixels(augment, expected):
    datamodule = DetectiveDataModule(augment=augment)
    assert resolve_cache_features("auto", datamodule) is expected
    assert resolve_cache_features(False, datamodule) is False
    with pytest.raises(ValueError, match=r"model\.cache_features"):
        resolve_cache_features("sometimes", datamodule)


def test_speed_levers_default_on_and_speed_plain_turns_them_all_off():
    fast, plain = compose_config([]), compose_config(["speed=plain"])
    assert fast.data.decoded_cache and fast.model.channels_last and fast.model.frozen_backbone == "jit"
    assert fast.model.cache_features == "auto" and fast.reuse_freed_memory is True
    assert not plain.data.decoded_cache and not plain.model.channels_last and plain.model.frozen_backbone == "eager"
    assert plain.model.cache_features is False and plain.model.compile is False and plain.reuse_freed_memory is False
