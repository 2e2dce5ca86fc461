"""The Predictor gives the LightningModule's numbers on the same images, for every kind of input."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from detective import memory
from detective.constants import PREDICT_KEPT_MEMORY
from detective.data.dataset import collate_views
from detective.predict.checkpoint import CheckpointError
from detective.predict.predictor import Failure, Prediction, Predictor
from detective.train.module import DetectiveModule
from tests.helpers import FakeGlibc, make_datamodule


@pytest.fixture(scope="module")
def predictor(trained_checkpoint):
    return Predictor.from_checkpoint(trained_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def val_data(trained_checkpoint, tiny_tree):
    """The validation split exactly as training serves it (same datamodule, same eval transform)."""
    hp = torch.load(trained_checkpoint, weights_only=True)["hyper_parameters"]
    dm = make_datamodule(tiny_tree, f"data.image_size={hp['image_size']}", f"data.crop_fraction={hp['crop_fraction']}")
    dm.setup()
    ds = dm.dataset("val")
    return [str(s.path) for s in ds.samples], [ds[i][:2] for i in range(len(ds))]


def test_same_tensors_and_probabilities_as_the_lightning_module(trained_checkpoint, predictor, val_data):
    paths, views = val_data
    for path, (image, crops) in zip(paths, views, strict=True):  # the shared eval views
        loaded = predictor.load(path)
        assert torch.equal(loaded[0], image) and torch.equal(loaded[1], crops) and len(crops) == 4
    module = DetectiveModule.load_from_checkpoint(trained_checkpoint, map_location="cpu").eval()
    with torch.inference_mode():
        subject_logits, source_logits = module(*collate_views(*zip(*views, strict=True)))
    expected_subjects = torch.softmax(subject_logits, dim=1)
    expected_ai = module.probability(source_logits)
    results = predictor.predict(paths, batch_size=4, top_k=3)
    for r, subj, ai in zip(results, expected_subjects, expected_ai, strict=True):
        assert isinstance(r, Prediction)
        assert dict(r.top_k) == pytest.approx({s: float(p) for s, p in zip(module.subjects, subj, strict=True)})
        assert r.ai_probability == pytest.approx(float(ai))
        assert r.subject == module.subjects[int(subj.argmax())]
        assert r.threshold == pytest.approx(module.threshold)
        assert r.is_ai == (r.ai_probability >= module.threshold)


def test_torch_only_net_and_detective_net_give_identical_predictions(trained_checkpoint, predictor, val_data):
    paths, _ = val_data
    full = Predictor.from_checkpoint(trained_checkpoint, device="cpu", lite=False)

    # Same DetectiveNet heads either way; only the trunk differs: torchvision's, or the torch-only twin.
    def torchvision_modules(net):
        return sum(type(m).__module__.startswith("torchvision") for m in net.modules())

    assert torchvision_modules(full.net) > 0 and torchvision_modules(predictor.net) == 0
    assert full.predict(paths) == predictor.predict(paths)


def test_paths_pil_images_and_bytes_agree_and_bad_inputs_fail_in_place(predictor, tiny_tree):
    path = next(tiny_tree.rglob("*.png"))
    by_path, by_pil, by_bytes, bad, empty, again = predictor.predict(
        [path, Image.open(path), path.read_bytes(), b"not an image", b"", str(path)], batch_size=2
    )
    assert by_path.path == str(path) and by_pil.path is None
    assert (by_path.top_k, by_path.ai_probability) == (by_pil.top_k, by_pil.ai_probability)
    assert (by_path.top_k, by_path.ai_probability) == (by_bytes.top_k, by_bytes.ai_probability)
    assert isinstance(bad, Failure) and "cannot read image" in bad.error
    assert isinstance(empty, Failure) and "empty" in empty.error
    assert again == by_path


def test_decoding_threads_change_nothing_but_speed(predictor, val_data):
    paths, _ = val_data
    assert predictor.predict(paths, batch_size=3, workers=0) == predictor.predict(paths, batch_size=3, workers=3)


def test_threshold_override_decides_the_source(trained_checkpoint, val_data):
    paths, _ = val_data
    everything_ai = Predictor.from_checkpoint(trained_checkpoint, device="cpu", threshold=0.0).predict(paths)
    assert all(r.is_ai and r.threshold == 0.0 and r.source == "AI generated" for r in everything_ai)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Predictor.from_checkpoint(trained_checkpoint, device="cpu", threshold=1.5)


def test_the_calibrated_temperature_softens_the_probabilities_and_keeps_every_decision(responsive, tiny_tree, tmp_path):
    """The responsive checkpoint is calibrated at T 1.7; the same weights at T 1 give the net's own probabilities,
    sigmoid(T * logit(p)), and with the threshold moved alike the same answers."""
    calibrated = Predictor.from_checkpoint(responsive("native"), device="cpu")
    raw = torch.load(responsive("native"), weights_only=True)
    raw["hyper_parameters"] = {**raw["hyper_parameters"], "temperature": 1.0}
    torch.save(raw, tmp_path / "own.ckpt")
    own = Predictor.from_checkpoint(tmp_path / "own.ckpt", device="cpu")
    paths = sorted(tiny_tree.rglob("*.png"))
    softened, sharp = calibrated.predict(paths), own.predict(paths)
    assert calibrated.temperature == 1.7
    back = torch.sigmoid(torch.logit(torch.tensor([r.ai_probability for r in softened], dtype=torch.float64)) * 1.7)
    assert back.tolist() == pytest.approx([r.ai_probability for r in sharp], abs=1e-5)
    assert max(abs(r.ai_probability - 0.5) for r in softened) < max(abs(r.ai_probability - 0.5) for r in sharp)
    own.threshold = float(torch.sigmoid(torch.logit(torch.tensor(calibrated.threshold, dtype=torch.float64)) * 1.7))
    assert [r.is_ai for r in own.predict(paths)] == [r.is_ai for r in softened]


def test_uncertain_band_says_uncertain_only_near_the_threshold(trained_checkpoint, val_data):
    path = val_data[0][0]

    def predict(threshold: float, band: float) -> Prediction:
        return Predictor.from_checkpoint(trained_checkpoint, "cpu", threshold, uncertain=band).predict([path])[0]

    p = predict(0.5, 0.0).ai_probability
    near = predict(p - 0.05, 0.1)
    assert near.uncertain and near.is_ai and near.source == "uncertain"  # `is_ai` still says which side
    assert near.describe().endswith(f"Source: uncertain (AI probability {p:.2f})")
    assert near.as_dict()["source"] == "uncertain" and near.as_dict()["uncertain"] is True
    far = predict(p - 0.05, 0.04)
    assert not far.uncertain and far.source == "AI generated" and far.as_dict()["uncertain"] is False
    assert not predict(p, 0.0).uncertain  # no band: never uncertain, even on the threshold


def test_checkpoint_that_is_not_a_detective_one_is_refused(tmp_path):
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "epoch": 3}, other)
    with pytest.raises(CheckpointError, match=r"other\.ckpt: not a detective checkpoint"):
        Predictor.from_checkpoint(other)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=r"garbage\.ckpt: not a checkpoint written by train\.py, or damaged; "):
        Predictor.from_checkpoint(garbage)


@pytest.mark.parametrize(("free", "trims"), [(PREDICT_KEPT_MEMORY, 0), (PREDICT_KEPT_MEMORY + 1, 8), (None, 8)])
def test_a_folder_keeps_a_batch_s_freed_memory_for_the_next_up_to_a_limit(
    predictor, tiny_tree, monkeypatch, free, trims
):
    """Each batch's activations reuse the last one's freed pages instead of faulting fresh ones in; past the limit
    (or where glibc cannot tell how much lies free) they are given back after the batch, so photos of many sizes
    never grow the process."""
    images = sorted(tiny_tree.rglob("*.png"))[:5]
    libc = FakeGlibc(free)
    monkeypatch.setattr(memory, "_glibc", lambda: libc)
    assert len(predictor.predict(images * 3, batch_size=2)) == 15
    assert libc.trims == trims + 1  # 15 images in batches of 2; all given back at the end


def test_a_folder_is_predicted_alike_without_glibc(predictor, tiny_tree, monkeypatch):
    images = sorted(tiny_tree.rglob("*.png"))[:5]
    with_glibc = predictor.predict(images)
    monkeypatch.setattr(memory, "_glibc", lambda: None)
    assert predictor.predict(images) == with_glibc


def test_a_long_folder_holds_a_few_batches_of_photos_in_memory_whatever_its_length(predictor, tiny_tree, monkeypatch):
    """On a CPU the default batch is small: a batch's crops go through the net a few at a time anyway, so a larger one
    would only keep more decoded photos waiting (batch + two batches decoded ahead)."""
    images = sorted(tiny_tree.rglob("*.png"))[:5] * 20
    loaded = []
    load = predictor.load
    monkeypatch.setattr(predictor, "load", lambda image: loaded.append(image) or load(image))
    results = predictor.iter_predict(images, workers=2)
    next(results)
    assert predictor.batch_size == 8
    assert len(loaded) <= 3 * predictor.batch_size + 1  # +1: the one submitted before the oldest is handed on
    assert 1 + sum(1 for _ in results) == len(images) == len(loaded)


def test_images_unlike_the_training_ones_are_called_unfamiliar_and_few_of_theirs(predictor, tiny_tree):
    assert predictor.novelty_limit is not None  # calibrated on the validation split and saved with the weights
    seen = predictor.predict(sorted(tiny_tree.rglob("*.png")))
    assert sum(r.unfamiliar for r in seen) <= len(seen) // 4
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8))
    (far,) = predictor.predict([noise])  # pixel noise, unlike the smooth shapes it was trained on
    assert far.unfamiliar and far.novelty > predictor.novelty_limit


def test_pil_image_input_is_not_closed_or_changed(predictor):
    img = Image.new("RGB", (50, 40), (200, 10, 10))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    from_pil, from_bytes = predictor.predict([img, buf.getvalue()])
    assert from_pil.top_k == from_bytes.top_k and img.size == (50, 40)
