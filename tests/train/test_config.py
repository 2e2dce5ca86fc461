"""One source for every setting: the YAML's values reach the objects train.py builds, and the demo is an option."""

import pytest
from hydra.utils import instantiate

from detective.train.config import compose_config, demo_by_default
from detective.train.run import module_arguments


def test_no_data_root_means_the_demo_recipe_and_naming_one_leaves_it_out():
    assert demo_by_default([]) == ["experiment=demo"]
    assert demo_by_default(["seed=3"]) == ["seed=3", "experiment=demo"]
    assert demo_by_default(["data.root=~/photos"]) == ["data.root=~/photos"]
    assert demo_by_default(["experiment=frozen"]) == ["experiment=frozen"]
    demo, own = compose_config([]), compose_config(["data.root=photos"])
    assert (demo.data.root, demo.data.image_size, demo.model.pretrained) == (None, 48, False)
    assert (own.data.image_size, own.model.pretrained, own.model.freeze_epochs) == (224, True, 2)


def test_objects_built_from_the_config_get_exactly_the_yaml_values():
    cfg = compose_config(["data.root=photos"])
    datamodule = instantiate(cfg.data)
    data = cfg.data
    assert (datamodule.image_size, datamodule.crop_fraction, datamodule.batch_size) == (
        data.image_size,
        data.crop_fraction,
        data.batch_size,
    )
    assert (datamodule.val_fraction, datamodule.test_fraction, datamodule.seed) == (
        data.val_fraction,
        data.test_fraction,
        cfg.seed,
    )
    assert datamodule.cache is None and datamodule.native  # native crops need full-resolution pixels
    assert datamodule.augment.scale == list(data.augment.scale) and datamodule.rule.token == data.labels.token
    args = module_arguments(cfg)
    # The model carries the data's view settings by interpolation, not by copying in code.
    for key in ("image_size", "crop_fraction", "source_view", "source_crop", "source_crops"):
        assert args[key] == data[key]
    assert args["freeze_epochs"] == cfg.model.freeze_epochs and args["labels"]["token"] == data.labels.token


@pytest.mark.parametrize(
    "experiment, kept",
    [
        (None, "final"),
        ("experiment=shortcut_proof", "final"),
        ("experiment=finetune", "best"),
        ("experiment=frozen", "best"),
        ("experiment=demo", "best"),
    ],
)
def test_the_default_recipe_keeps_the_final_epoch_and_the_measured_recipes_their_best(experiment, kept):
    cfg = compose_config(["data.root=photos", *([experiment] if experiment else [])])
    checkpoint, stopping = cfg.callbacks.model_checkpoint, cfg.callbacks.get("early_stopping")
    if kept == "final":
        assert checkpoint.monitor is None and stopping is None
    else:
        assert checkpoint.monitor == cfg.optimized_metric == "val/score" and stopping.patience == 10
