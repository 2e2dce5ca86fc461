"""`predict.py --export model.onnx`: the whole net with its settings, checked, written whole or not at all."""

import io
import json
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from detective.commands import command
from detective.predict import onnx_export
from detective.predict.cli import main
from detective.predict.onnx_export import ExportError, export_onnx
from detective.predict.onnx_runtime import CROPS, IMAGES, METADATA_KEY, NOVELTY, SOURCE, SUBJECT
from detective.predict.settling import Settling

pytestmark = pytest.mark.slow  # exports a trained checkpoint


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _settings(model: onnx.ModelProto) -> dict:
    return json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])


def _dims(value: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_the_file_alone_holds_the_settings_and_takes_both_views_in_any_batch(onnx_model, responsive_checkpoint):
    hp = torch.load(responsive_checkpoint, weights_only=True)["hyper_parameters"]
    model = onnx.load(onnx_model)
    settings = _settings(model)
    assert settings["format"] == 2 and settings["backbone"] == "mobilenet_v2" and settings["subject_head"] is True
    keys = ("subjects", "image_size", "crop_fraction", "source_view", "source_crop", "source_crops", "threshold")
    for key in (*keys, "mean", "std"):
        assert settings[key] == pytest.approx(list(hp[key]) if isinstance(hp[key], tuple) else hp[key])
    assert [(i.name, _dims(i)) for i in model.graph.input] == [
        (IMAGES, ["batch", 3, 64, 64]),
        (CROPS, ["crops", 3, 48, 48]),
    ]
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.UINT8 for i in model.graph.input)
    outputs = [(SUBJECT, ["batch", 3]), (SOURCE, ["crops"]), (NOVELTY, ["crops"])]
    assert [(o.name, _dims(o)) for o in model.graph.output] == outputs
    assert settings["novelty_limit"] == pytest.approx(hp["novelty_limit"])  # the model tells unfamiliar images
    session = onnxruntime.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch, crops in ((1, 1), (5, 2), (2, 9)):  # as many crops as images, fewer, more
        feeds = {
            IMAGES: rng.integers(0, 256, (batch, 3, 64, 64), dtype=np.uint8),
            CROPS: rng.integers(0, 256, (crops, 3, 48, 48), dtype=np.uint8),
        }
        subjects, logits, novelty = session.run([SUBJECT, SOURCE, NOVELTY], feeds)
        assert subjects.shape == (batch, 3) and logits.shape == novelty.shape == (crops,)
        assert np.allclose(subjects.sum(axis=1), 1, atol=1e-6)  # probabilities


@pytest.mark.parametrize(
    ("kind", "view", "inputs", "outputs"),
    [
        ("resized", "resized", {IMAGES: ["batch", 3, 64, 64]}, {SUBJECT: ["batch", 3], SOURCE: ["batch"]}),
        ("source-only", "native", {CROPS: ["crops", 3, 48, 48]}, {SOURCE: ["crops"], NOVELTY: ["crops"]}),
    ],
)
def test_a_model_takes_only_the_views_its_heads_read(kind, view, inputs, outputs, exported):
    model = onnx.load(exported(kind))
    assert {i.name: _dims(i) for i in model.graph.input} == inputs
    assert {o.name: _dims(o) for o in model.graph.output} == outputs
    settings = _settings(model)
    assert settings["subject_head"] is (SUBJECT in outputs) and settings["source_view"] == view
    assert settings["subject_head"] or settings["subjects"] == []
    assert settings["inputs"].startswith(next(iter(inputs))) and settings["outputs"].startswith(next(iter(outputs)))


def test_cli_export_writes_the_model_and_says_so(responsive_checkpoint, tmp_path):
    destination = tmp_path / "model.onnx"
    code, out, err = run("--export", str(destination), "--checkpoint", str(responsive_checkpoint), "--threshold", "0.7")
    assert (code, err) == (0, "") and destination.is_file()
    settings = json.loads({p.key: p.value for p in onnx.load(destination).metadata_props}[METADATA_KEY])
    assert settings["threshold"] == 0.7  # --threshold replaces the calibrated one in the exported settings
    assert out.startswith(
        f"wrote {destination}: 3 subjects at 64 px, source head on native 48 px crops (up to 8), settings from "
        f"{responsive_checkpoint}; agrees "
    )
    assert out.endswith(f"predict with: {command('predict')} IMAGE --checkpoint {destination}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # nothing left aside


def test_export_usage_errors_exit_2(responsive_checkpoint, onnx_model, tmp_path, capsys):
    for argv in (["--export", "model.txt"], ["--export", "model.onnx", "cat.jpg"], []):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "--export MODEL.onnx writes the model and predicts nothing" in capsys.readouterr().err
    code, _, err = run("--export", str(tmp_path / "again.onnx"), "--checkpoint", str(onnx_model))
    assert code == 2 and err == (
        f"predict.py: error: --export takes a .ckpt written by train.py as --checkpoint, not {onnx_model}\n"
    )
    code, _, err = run("--export", str(tmp_path / "m.onnx"), "--checkpoint", str(tmp_path / "none.ckpt"))
    assert code == 2 and err.startswith("predict.py: error: checkpoint not found: ")
    unwritable = tmp_path / "no-such-folder" / "m.onnx"
    code, _, err = run("--export", str(unwritable), "--checkpoint", str(responsive_checkpoint))
    assert code == 2 and err.startswith(f"predict.py: error: {unwritable}: cannot write the model (")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_copy_that_disagrees_with_the_net_is_refused_and_not_written(responsive_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)  # any difference, even none, now counts as disagreement
    destination = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match=r"model\.onnx: the exported model disagrees with the checkpoint's net"):
        export_onnx(responsive_checkpoint, destination)
    assert list(tmp_path.iterdir()) == []


def test_the_check_judges_images_through_their_crops(responsive_checkpoint, tmp_path, monkeypatch):
    """An ONNX side that scored each image by its first crop alone, not the mean of its crops, is caught."""

    def first_crop(self, judge, owner, threshold, temperature=1.0):
        firsts = np.zeros(len(owner), dtype=bool)
        firsts[np.unique(owner, return_index=True)[1]] = True
        return judge(firsts)

    monkeypatch.setattr(Settling, "judged", first_crop)
    with pytest.raises(ExportError, match="disagrees with the checkpoint's net"):
        export_onnx(responsive_checkpoint, tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


def test_missing_onnx_is_one_line_naming_the_extra(responsive_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # what `import onnx` meets when it is not installed
    code, out, err = run("--export", str(tmp_path / "model.onnx"), "--checkpoint", str(responsive_checkpoint))
    assert (code, out) == (2, "")
    assert err == (
        "predict.py: error: writing model.onnx needs onnx, which is not installed: pip install 'detective[onnx]'\n"
    )
