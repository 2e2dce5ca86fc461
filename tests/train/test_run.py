import csv

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from detective.predict.checkpoint import read_checkpoint
from detective.train.config import compose_config
from detective.train.module import DetectiveModule
from detective.train.run import ConfigError, resolve_cache_features, resolve_freeze_batchnorm, train
from tests.helpers import make_datamodule, make_module, train_overrides, write_tree


def test_tiny_fit_writes_best_and_last_checkpoints(trained_checkpoint):
    assert trained_checkpoint.is_file()
    assert (trained_checkpoint.parent / "last.ckpt").is_file()
    assert not list(trained_checkpoint.parent.glob(".*.partial"))  # atomic saves leave no temp files


def test_checkpoint_reloads_with_no_extra_arguments(trained_checkpoint):
    module = DetectiveModule.load_from_checkpoint(trained_checkpoint, map_location="cpu")
    assert module.subjects == ["cat", "dog", "owl"]
    assert module.hparams.image_size == 32
    assert 0.0 <= module.threshold <= 1.0
    subject_logits, source_logits = module.eval()(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    assert subject_logits.shape == (2, 3) and source_logits.shape == (2,)


def test_a_checkpoint_from_before_the_source_statistics_and_crop_loss_loads_and_predicts_as_trained(tmp_path):
    import lightning as L

    from detective.predict.predictor import Predictor

    torch.manual_seed(0)
    old = make_module(("cat", "dog"), source_taps=[1, 3], source_statistics=["mean", "std"]).eval()
    hparams = {k: v for k, v in old.hparams.items() if k not in ("source_statistics", "source_loss")}
    path = tmp_path / "old.ckpt"
    torch.save(
        {"state_dict": old.state_dict(), "hyper_parameters": hparams, "pytorch-lightning_version": L.__version__}, path
    )
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    loaded = DetectiveModule.load_from_checkpoint(path, map_location="cpu").eval()
    assert loaded.net.source_statistics == ("mean", "std") and loaded.hparams.source_loss == "image"
    assert torch.allclose(loaded(images)[1], old(images)[1])
    assert Predictor.from_checkpoint(path, device="cpu").net.source_statistics == ("mean", "std")


def test_a_checkpoint_from_before_every_added_setting_loads_with_the_values_it_was_trained_with(tmp_path):
    import lightning as L

    from detective.predict.checkpoint import ADDED_HPARAMS
    from detective.predict.predictor import Predictor

    torch.manual_seed(0)
    old = make_module(("cat", "dog"), **ADDED_HPARAMS).eval()  # the pooled last block for both heads
    hparams = {k: v for k, v in old.hparams.items() if k not in ADDED_HPARAMS}
    path = tmp_path / "old.ckpt"
    torch.save(
        {"state_dict": old.state_dict(), "hyper_parameters": hparams, "pytorch-lightning_version": L.__version__}, path
    )
    loaded = DetectiveModule.load_from_checkpoint(path, map_location="cpu").eval()
    assert {k: loaded.hparams[k] for k in ADDED_HPARAMS} == ADDED_HPARAMS
    assert DetectiveModule.load_from_checkpoint(path, source_loss="crop").hparams.source_loss == "crop"  # overrides
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert torch.allclose(loaded(images)[1], old(images)[1])
    assert read_checkpoint(path).hparams["source_taps"] == []
    assert Predictor.from_checkpoint(path, device="cpu").net.source_taps == ()


def test_checkpoint_holds_plain_values_only(trained_checkpoint):
    info = read_checkpoint(trained_checkpoint)  # weights_only loading: it would refuse any pickled object
    assert info.subjects == ["cat", "dog", "owl"]
    assert {"image_size", "crop_fraction", "mean", "std", "threshold", "backbone"} <= set(info.hparams)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.source_view=resized", "data.augment.crop=center", "data.augment.flip=false"], True),
        (["data.source_view=resized", "data.augment.crop=center"], True),  # flipped or not: two versions at most
        (["data.source_view=resized", "data.augment.jpeg_prob=0.1", "data.augment.crop=center"], False),
        (["data.source_view=native", "data.augment.crop=center", "data.source_train_crops=1"], False),  # random
        (["data.source_view=native", "data.augment.crop=center", "data.source_train_crops=grid"], True),
        (["data.source_view=native", "data.source_train_crops=grid", "data.augment.crop=random"], False),  # image view
    ],
)
def test_cache_features_auto_only_when_every_epoch_shows_the_same_pixels_or_their_mirror(overrides, expected):
    datamodule = make_datamodule(None, *overrides)
    assert resolve_cache_features("auto", datamodule) is expected
    assert resolve_cache_features(False, datamodule) is False
    with pytest.raises(ValueError, match=r"model\.cache_features"):
        resolve_cache_features("sometimes", datamodule)


def test_speed_levers_that_work_on_any_machine_default_on_and_speed_plain_turns_them_all_off():
    fast, plain = compose_config([]), compose_config(["speed=plain"])
    assert fast.data.decoded_cache and fast.model.channels_last and fast.model.frozen_backbone == "folded"
    assert fast.model.cache_features == "auto" and fast.reuse_freed_memory is False  # opt-in: grows on mixed sizes
    assert not plain.data.decoded_cache and not plain.model.channels_last and plain.model.frozen_backbone == "eager"
    assert plain.model.cache_features is False and plain.model.compile is False and plain.reuse_freed_memory is False


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], False),  # the demo set trains from scratch: no statistics to keep
        (["data.root=photos"], True),  # ImageNet weights
        (["model.weights_path=w.pth"], True),
        (["data.root=photos", "model.pretrained=false"], False),
        (["data.root=photos", "model.freeze_batchnorm=false"], False),
    ],
)
def test_freeze_batchnorm_auto_keeps_statistics_only_when_the_backbone_has_some(overrides, expected):
    assert resolve_freeze_batchnorm(compose_config(overrides)) is expected


def test_freeze_batchnorm_without_pretrained_weights_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"model\.freeze_batchnorm=true needs pretrained weights.*model\.pretrained"):
        resolve_freeze_batchnorm(compose_config(["model.freeze_batchnorm=true"]))


def test_fine_tuning_from_a_weights_file_keeps_its_batchnorm_statistics(tiny_tree, tmp_path):
    import torchvision

    torch.manual_seed(0)
    pretrained = torchvision.models.mobilenet_v2(weights=None)
    for m in pretrained.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    torch.save(pretrained.state_dict(), tmp_path / "weights.pth")
    train(
        compose_config(
            train_overrides(
                tiny_tree, tmp_path / "run", f"model.weights_path={tmp_path / 'weights.pth'}", "experiment=finetune"
            )
        )
    )

    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["freeze_batchnorm"] is True  # auto, with pretrained weights
    saved, loaded = ckpt["state_dict"], pretrained.state_dict()
    for key in ("0.1.running_mean", "9.conv.1.1.running_var", "18.1.running_mean"):
        assert torch.equal(saved[f"net.backbone.{key}"], loaded[f"features.{key}"])
    assert not torch.equal(saved["net.backbone.0.0.weight"], loaded["features.0.0.weight"])  # the weights learned


@pytest.mark.slow
def test_last_checkpoint_is_the_last_epoch_and_resuming_continues_after_it(tiny_tree, tmp_path):
    score = train(compose_config(train_overrides(tiny_tree, tmp_path / "run", "trainer.max_epochs=3", "test=false")))
    scores = [
        float(r["val/score"])
        for r in csv.DictReader((tmp_path / "run" / "logs" / "metrics.csv").open())
        if r.get("val/score")
    ]
    assert score == pytest.approx(scores[-1])  # what a sweeper gets: the kept (last) epoch's score
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 2  # epochs 0, 1, 2
    kept = torch.load(last.with_name("best.ckpt"), map_location="cpu", weights_only=True)
    assert kept["epoch"] == 2 and "EarlyStopping" not in str(kept["callbacks"])  # callbacks=final, the default
    resumed = tmp_path / "resumed"
    train(
        compose_config(train_overrides(tiny_tree, resumed, "trainer.max_epochs=4", "test=false", f"ckpt_path={last}"))
    )
    assert torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 3
    epochs = {int(r["epoch"]) for r in csv.DictReader((resumed / "logs" / "metrics.csv").open()) if r["epoch"]}
    assert epochs == {3}  # only the epoch that was missing was trained


@pytest.mark.slow
def test_reported_test_metrics_are_what_predict_gives_with_the_best_checkpoint(tiny_tree, tmp_path):
    from detective.predict.predictor import Predictor
    from detective.predict.settling import EVERY_CROP

    out = tmp_path / "run"
    # callbacks=best: the best epoch is not the last, so its own threshold must come back with its weights. Four
    # 32 px crops per image, each answered from its first crop (settle_margin=0): the test step settles as
    # prediction does.
    settle = ["data.source_crop=32", "model.settle_crops=1", "model.settle_margin=0"]
    train(compose_config(train_overrides(tiny_tree, out, "trainer.max_epochs=4", "seed=3", "callbacks=best", *settle)))
    rows = [r for r in csv.DictReader((out / "logs" / "metrics.csv").open()) if r.get("test/source_acc")]
    reported = {k: float(rows[-1][k]) for k in ("test/source_acc", "test/subject_acc", "test/unfamiliar")}
    data = [o for o in train_overrides(tiny_tree, out) if o.startswith("data.") and not o.startswith("data.root")]
    datamodule = make_datamodule(tiny_tree, *data, "seed=3")  # the run's split: data.seed follows the seed
    datamodule.setup()
    test = datamodule.splits["test"]
    best = out / "checkpoints" / "best.ckpt"
    results = Predictor.from_checkpoint(best, device="cpu").predict([s.path for s in test])
    every_crop = Predictor.from_checkpoint(best, device="cpu")
    every_crop.settling = EVERY_CROP
    assert [r.ai_probability for r in results] != [r.ai_probability for r in every_crop.predict([s.path for s in test])]
    source_acc = sum(r.is_ai == s.is_ai for r, s in zip(results, test, strict=True)) / len(test)
    subject_acc = sum(r.subject == s.subject for r, s in zip(results, test, strict=True)) / len(test)
    unfamiliar = sum(r.unfamiliar for r in results) / len(test)  # over the best epoch's novelty limit
    expected = {"test/source_acc": source_acc, "test/subject_acc": subject_acc, "test/unfamiliar": unfamiliar}
    assert reported == pytest.approx(expected, abs=1e-6)
    # The probabilities are the best epoch's calibration: the temperature one of its validations fitted, from 1 up.
    temperature = read_checkpoint(best).hparams["temperature"]
    fitted = [
        float(r["val/temperature"])
        for r in csv.DictReader((out / "logs" / "metrics.csv").open())
        if r.get("val/temperature")
    ]
    assert temperature >= 1.0 and min(abs(t - temperature) for t in fitted) < 1e-6
    # ... and the run drew its pictures: real PNGs of plausible size.
    pictures = {p.name: p for p in (out / "plots").glob("*.png")}
    assert {"training_curves.png", "subject_confusion.png", "source_reliability.png"} <= set(pictures)
    for picture in pictures.values():
        with Image.open(picture) as image:
            assert image.format == "PNG" and 300 <= image.width <= 3000 and 200 <= image.height <= 3000


@pytest.mark.slow
def test_a_run_on_two_roots_trains_reports_and_keeps_both_in_its_config(tiny_tree, tmp_path, caplog):
    flat = write_tree(tmp_path / "flat", [f"{src}/{src}{i}.png" for src in ("real", "ai") for i in range(8)], (48, 40))
    out = tmp_path / "run"
    overrides = [o for o in train_overrides(tiny_tree, out) if not o.startswith("data.root=")]
    train(compose_config([*overrides, f"data.root=[{tiny_tree},{flat}]"]))
    assert OmegaConf.load(out / "config.yaml").data.root == [str(tiny_tree), str(flat)]
    assert read_checkpoint(out / "checkpoints" / "best.ckpt").subjects == []  # flat has no subject folders
    assert f"Root {flat.resolve()}:" in caplog.text and "Held-out test image:" in caplog.text
