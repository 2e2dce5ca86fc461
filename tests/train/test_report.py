"""The end-of-run report: its pictures also reach the loggers that take images (TensorBoard); the predict.py command
it suggests names the held-out image it showed."""

import io
import logging
import re
from types import SimpleNamespace

import numpy as np
import pytest
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

import detective.train.report as report_module
from detective.data.scan import Sample
from detective.predict.predictor import Predictor
from detective.predict.results import Failure
from detective.train.report import held_out_example, log_pictures, report


class ImageTaker:
    """A logger whose experiment takes images as TensorBoard's SummaryWriter does."""

    def __init__(self):
        self.images, self.flushed = {}, False
        self.experiment = self

    def add_image(self, tag, pixels, dataformats):
        self.images[tag] = (pixels.shape, dataformats)

    def flush(self):
        self.flushed = True


def picture(path, size=(40, 30)):
    Image.new("RGBA", size, (10, 200, 30, 255)).save(path)
    return path


def test_pictures_go_to_loggers_that_take_images_and_skip_the_others(tmp_path):
    pictures = [picture(tmp_path / "source_roc_pr.png"), picture(tmp_path / "training_curves.png", (50, 20))]
    taker, csv_logger = ImageTaker(), CSVLogger(tmp_path / "logs")
    assert log_pictures(pictures, [csv_logger, taker]) == [taker]
    assert taker.images == {"plots/source_roc_pr": ((30, 40, 3), "HWC"), "plots/training_curves": ((20, 50, 3), "HWC")}
    assert taker.flushed


def test_pictures_land_in_a_tensorboard_event_file(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional extra: pip install 'detective[tensorboard]'")
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="tb", version="")
    log_pictures([picture(tmp_path / "subject_confusion.png")], [logger])
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    (image,) = events.Images("plots/subject_confusion")
    assert (image.width, image.height) == (40, 30)
    assert np.asarray(Image.open(io.BytesIO(image.encoded_image_string))).shape == (30, 40, 3)


def test_the_suggested_predict_command_names_the_held_out_image_just_shown(tmp_path, monkeypatch, caplog):
    test = [Sample(tmp_path / f"{name}.jpg", name, False) for name in ("circle_020", "square_011", "triangle_406")]
    datamodule = SimpleNamespace(splits={"test": test})
    assert held_out_example(datamodule, seed=0) != test[0]  # the first test image would be a different one
    monkeypatch.setattr(Predictor, "from_checkpoint", lambda *args, **kwargs: SimpleNamespace(
        predict=lambda paths: [Failure(str(p), "not predicted here") for p in paths]
    ))  # fmt: skip
    monkeypatch.setattr(report_module, "write_pictures", lambda *args: [])
    with caplog.at_level(logging.INFO, logger=report_module.log.name):
        report({}, str(tmp_path / "best.ckpt"), datamodule, seed=0, output_dir=tmp_path)
    shown = re.search(r"Held-out test image: (\S+)", caplog.text).group(1)
    suggested = re.search(r"Predict with: +.* (\S+) --checkpoint", caplog.text).group(1)
    assert shown == suggested == str(held_out_example(datamodule, seed=0).path)
