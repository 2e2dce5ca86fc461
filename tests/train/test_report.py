"""The end-of-run report: its pictures also reach the loggers that take images (TensorBoard)."""

import io

import numpy as np
import pytest
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

from detective.train.report import log_pictures


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
