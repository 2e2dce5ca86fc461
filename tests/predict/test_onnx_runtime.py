"""The ONNX path predicts what the PyTorch path predicts, without importing torch, and fails the same way."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from detective.data.geometry import ViewSettings
from detective.predict.cli import main
from detective.predict.discover import CheckpointError
from detective.predict.onnx_runtime import CROPS, IMAGES, METADATA_KEY, OnnxPredictor, infer
from detective.predict.predictor import Prediction, Predictor
from detective.predict.settling import Settling
from tests.predict.test_settling import LOGITS, OWNER

REPO = Path(__file__).resolve().parents[2]
PARITY = 1e-4  # the bound on probability differences; float rounding gives about 1e-7

pytestmark = pytest.mark.slow  # each test needs the exported model (training, then export)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _pixels(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth colour fields plus noise: photo-like content, so JPEG and resizing behave as on real images."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    noise = rng.normal(0, 12, (height, width, 1))
    return np.clip(np.asarray(coarse, dtype=np.float64) + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def assorted_files(tmp_path_factory) -> list[Path]:
    """Several kinds and sizes: smaller and larger than the eval crop (64, from 73) and than the native crop (48),
    odd sizes, both orientations, a big JPEG (decoded at reduced scale for the downscaled view, whole for native
    crops, of which it has more than the 8 judged), grayscale, transparency, 16-bit, a palette GIF."""
    folder = tmp_path_factory.mktemp("kinds")
    rgb = lambda w, h, seed: Image.fromarray(_pixels(w, h, seed))  # noqa: E731
    kinds = {
        "landscape.png": rgb(640, 480, 1),
        "portrait.jpg": rgb(301, 900, 2),
        "big.jpg": rgb(2000, 1500, 3),
        "tiny.png": rgb(7, 5, 4),
        "exact.png": rgb(73, 73, 5),
        "gray.png": rgb(50, 41, 6).convert("L"),
        "rgba.png": Image.fromarray(np.dstack([_pixels(100, 77, 7), _pixels(100, 77, 8)[..., :1]]), "RGBA"),
        "gray16.png": Image.fromarray(_pixels(81, 64, 9)[..., 0].astype(np.uint16) * 257),
        "palette.gif": rgb(120, 90, 10).convert("P"),
    }
    for name, image in kinds.items():
        image.save(folder / name, quality=90) if name.endswith(".jpg") else image.save(folder / name)
    return [folder / name for name in kinds]


@pytest.fixture(scope="module")
def torch_predictor(responsive_checkpoint):
    return Predictor.from_checkpoint(responsive_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def onnx_predictor(onnx_model):
    return OnnxPredictor.from_file(onnx_model, device="cpu")


def _channels_first(array: np.ndarray | None) -> np.ndarray | None:
    """A numpy view, (..., H, W, 3), in the torch views' layout (..., 3, H, W)."""
    return None if array is None else np.moveaxis(array, -1, -3)


@pytest.mark.parametrize("kind", ["native", "resized", "source-only", "taps"])
def test_same_views_subjects_and_probabilities_as_the_pytorch_path(kind, responsive, exported, assorted_files):
    torch_predictor = Predictor.from_checkpoint(responsive(kind), device="cpu")
    onnx_predictor = OnnxPredictor.from_file(exported(kind), device="cpu")
    crops = []
    for path in assorted_files:  # the numpy twins of the eval views give the very same pixels
        ours, theirs = onnx_predictor.load(path), torch_predictor.load(path)
        for got, expected in zip(ours, theirs, strict=True):
            assert (got is None) == (expected is None), path
            assert got is None or np.array_equal(_channels_first(got), expected.numpy()), path
        crops.append(0 if ours[1] is None else len(ours[1]))
    if kind != "resized":  # grids of several crops, up to the cap; one (padded) for the image smaller than the crop
        assert crops == [6, 8, 6, 1, 4, 2, 6, 4, 6], crops
    n = len(torch_predictor.subjects)
    # Batches of images with unequal crop counts.
    expected = torch_predictor.predict(assorted_files, batch_size=4, top_k=n)
    got = onnx_predictor.predict(assorted_files, batch_size=4, top_k=n)
    assert all(isinstance(r, Prediction) for r in expected + got)
    ai = [r.ai_probability for r in expected]
    assert max(ai) - min(ai) > 100 * PARITY  # the net's answers depend on the image: agreement means something
    subject_diff = ai_diff = 0.0
    for e, g in zip(expected, got, strict=True):
        assert (g.path, g.subject, g.is_ai, g.threshold) == (e.path, e.subject, e.is_ai, e.threshold)
        assert [s for s, _ in g.top_k] == [s for s, _ in e.top_k]
        subject_diff = max(subject_diff, *(abs(p - q) for (_, p), (_, q) in zip(g.top_k, e.top_k, strict=True)), 0)
        ai_diff = max(ai_diff, abs(g.ai_probability - e.ai_probability))
    if kind == "source-only":
        assert all(r.subject is None and r.top_k == [] for r in got)
    subjects = f"subjects {subject_diff:.1e}" if n else "no subject head"
    spread = max(ai) - min(ai)
    print(
        f"\nONNX vs PyTorch, {kind}, {len(assorted_files)} images: {subjects}, AI {ai_diff:.1e} (spread {spread:.2f})"
    )
    assert subject_diff <= PARITY and ai_diff <= PARITY


def test_settings_come_from_the_file_and_threshold_can_be_overridden(onnx_predictor, onnx_model, assorted_files):
    assert onnx_predictor.subjects == ["cat", "dog", "owl"]
    assert onnx_predictor.view_settings == ViewSettings(64, 0.875, "native", 48, 8, subject_head=True)
    everything_ai = OnnxPredictor.from_file(onnx_model, threshold=0.0).predict(assorted_files[:3])
    assert all(r.is_ai and r.threshold == 0.0 for r in everything_ai)
    with pytest.raises(ValueError, match="between 0 and 1"):
        OnnxPredictor.from_file(onnx_model, threshold=1.5)


def test_bad_inputs_fail_in_place_as_in_the_pytorch_path(onnx_predictor, torch_predictor, assorted_files):
    inputs = [assorted_files[0], b"not an image", b"", Image.open(assorted_files[1])]
    for got, expected in zip(onnx_predictor.predict(inputs), torch_predictor.predict(inputs), strict=True):
        assert type(got) is type(expected) and got.path == expected.path
        assert getattr(got, "error", None) == getattr(expected, "error", None)


def test_cli_gives_the_pytorch_paths_output_statuses_and_errors(
    responsive_checkpoint, onnx_model, assorted_files, tmp_path
):
    notes = tmp_path / "notes.jpg"
    notes.write_text("not an image")
    args = [*map(str, assorted_files[:3]), "missing.jpg", str(notes), "--json", "--top-k", "3", "--uncertain", "0.3"]
    code, out, err = run(*args, "--checkpoint", str(onnx_model))
    torch_code, torch_out, torch_err = run(*args, "--checkpoint", str(responsive_checkpoint))
    assert code == torch_code == 1 and err == torch_err
    assert err.count("predict.py: error: ") == 2 and "missing.jpg" in err
    assert any(json.loads(line).get("uncertain") for line in out.splitlines())  # the band is applied
    for line, torch_line in zip(out.splitlines(), torch_out.splitlines(), strict=True):
        record, torch_record = json.loads(line), json.loads(torch_line)
        if "error" not in record:  # the exported model tells unfamiliar images as the checkpoint does
            assert record.pop("unfamiliar") is torch_record.pop("unfamiliar") is not None
            assert record.pop("novelty") == pytest.approx(torch_record.pop("novelty"), rel=1e-4)
        assert _flat(record) == pytest.approx(_flat(torch_record), abs=PARITY)


def _flat(record: dict) -> dict:
    """A --json record with its top_k list spread into keys, for `pytest.approx` (which takes no nesting)."""
    top = {f"top_{i}_{k}": v for i, entry in enumerate(record.pop("top_k", [])) for k, v in entry.items()}
    return {**record, **top}


def test_predict_py_with_an_onnx_model_imports_no_torch(onnx_model, assorted_files):
    script = (
        "import sys\n"
        "from detective.predict.cli import main\n"
        f"code = main([{str(assorted_files[0])!r}, '--checkpoint', {str(onnx_model)!r}])\n"
        "heavy = ('torch', 'torchvision', 'lightning', 'hydra', 'omegaconf')\n"
        "print('CODE', code, 'HEAVY', sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{assorted_files[0]}  Object: ") and lines[-1] == "CODE 0 HEAVY []"


def test_missing_onnxruntime_is_one_line_naming_the_extra(onnx_model, assorted_files, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` meets when it is not installed
    code, out, err = run(str(assorted_files[0]), "--checkpoint", str(onnx_model))
    assert (code, out) == (2, "")
    assert err == (
        "predict.py: error: predicting with model.onnx needs onnxruntime, which is not installed: "
        "pip install 'detective[onnx]'\n"
    )


def test_files_that_are_not_our_onnx_models_are_refused_in_one_line(assorted_files, tmp_path):
    missing = tmp_path / "nope.onnx"
    code, _, err = run(str(assorted_files[0]), "--checkpoint", str(missing))
    assert code == 2 and err == (
        f"predict.py: error: checkpoint not found: {missing} "
        "(write one with `python predict.py --export nope.onnx --checkpoint best.ckpt`)\n"
    )
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a model" * 10)
    code, _, err = run(str(assorted_files[0]), "--checkpoint", str(garbage))
    assert code == 2 and err.count("\n") == 1 and f"{garbage}: not a readable ONNX model (" in err
    foreign = tmp_path / "foreign.onnx"  # a valid ONNX model, but not one `--export` wrote
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), foreign)
    with pytest.raises(CheckpointError, match=r"foreign\.onnx: not a detective model \(no settings in its metadata\)"):
        OnnxPredictor.from_file(foreign)


def _with_settings(onnx_model: Path, path: Path, **changes) -> Path:
    """A copy of the exported model whose settings have `changes` (a value of None removes the key)."""
    model = onnx.load(onnx_model)
    entry = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    settings = {**json.loads(entry.value), **changes}
    entry.value = json.dumps({k: v for k, v in settings.items() if v is not None})
    onnx.save(model, path)
    return path


def test_a_model_of_another_format_or_without_its_settings_asks_for_a_new_export(onnx_model, tmp_path):
    newer = _with_settings(onnx_model, tmp_path / "newer.onnx", format=99)
    with pytest.raises(CheckpointError, match=r"newer\.onnx: model format 99, this detective reads format 2; export"):
        OnnxPredictor.from_file(newer)
    partial = _with_settings(onnx_model, tmp_path / "partial.onnx", subjects=None, threshold=None)
    with pytest.raises(CheckpointError, match=r"partial\.onnx: its settings lack subjects, threshold; export it again"):
        OnnxPredictor.from_file(partial)


def test_devices_onnxruntime_lacks_are_usage_errors(onnx_model, assorted_files):
    code, _, err = run(str(assorted_files[0]), "--checkpoint", str(onnx_model), "--device", "mps")
    assert code == 2
    assert err == "predict.py: error: --device mps: not available for an ONNX model; use --device cpu or auto\n"


class _CountingSession:
    """Stands in for an onnxruntime session: judges a crop by its first pixel (as a logit), counting what it is fed."""

    def __init__(self) -> None:
        self.fed: list[tuple[int, int]] = []  # (images, crops) per call

    def get_providers(self) -> list[str]:
        return ["CPUExecutionProvider"]

    def run(self, names, feeds):
        self.fed.append((len(feeds[IMAGES]), len(feeds[CROPS])))
        logits = feeds[CROPS][:, 0, 0, 0].astype(np.float32)
        return [np.full((len(feeds[IMAGES]), 2), 0.5, np.float32), logits, np.abs(logits)][: len(names)]


def test_the_onnx_path_judges_the_rest_of_the_unsettled_images_only_and_answers_as_the_rule_does():
    session, views = _CountingSession(), ViewSettings(64, 1.0, "native", 4, 8, subject_head=True)
    crops = np.zeros((len(LOGITS), 3, 4, 4), np.float32)
    crops[:, 0, 0, 0] = LOGITS
    feeds = {IMAGES: np.zeros((3, 3, 8, 8), np.uint8), CROPS: crops}
    subject, ai, novelty = infer(session, views, feeds, OWNER, True, Settling(2, 2.0), 0.5)
    # Every image's first two crops (4 crops a call on a CPU) and the views, once; then image 1's other three.
    assert session.fed == [(3, 4), (0, 2), (0, 3)]
    want_logits, want_novelty = Settling(2, 2.0).answer(LOGITS, OWNER, 0.5, np.abs(LOGITS))
    assert ai.tolist() == pytest.approx((1 / (1 + np.exp(-want_logits))).tolist())
    assert novelty.tolist() == want_novelty.tolist() and subject.shape == (3, 2)
