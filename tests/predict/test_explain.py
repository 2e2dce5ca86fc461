"""`predict.py --explain`: Grad-CAM maps of both heads, where the evidence is, drawn and written per image."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from detective.data.transforms import eval_box
from detective.data.views import eval_views
from detective.model.net import DetectiveNet
from detective.predict.cli import main
from detective.predict.explain import (
    MAX_SIDE,
    MIN_SIDE,
    HeadMap,
    explain_image,
    grad_cam,
    last_block,
    render,
    write_png,
)
from detective.predict.predictor import Predictor
from tests.helpers import REPO, random_checkpoint, write_image

SQUARE = (slice(76, 108), slice(100, 132))  # rows, columns of the bright square in a 160 x 128 black image


def evidence_net(num_subjects: int) -> DetectiveNet:
    """A net whose evidence is brightness: its trunk's one live channel is an 8x8 patch's mean brightness minus
    0.5 (clipped at 0), and both the AI logit and subject "b"'s logit grow with that channel's mean."""
    trunk = nn.Sequential(nn.Conv2d(3, 1280, 8, stride=8), nn.ReLU())
    net = DetectiveNet(
        num_subjects,
        trunk=trunk,
        shared=4,
        subject_hidden=4,
        source_hidden=4,
        dropout=0.0,
        mean=(0, 0, 0),
        std=(1, 1, 1),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        trunk[0].weight[0] = 1 / (3 * 64)
        trunk[0].bias[0] = -0.5
        net.shared[0].weight[0, 0] = 1
        net.source_head[0].weight[0, 0] = 1
        net.source_head[3].weight[0, 0] = 40
        net.source_head[3].bias[0] = -1  # a black crop: AI probability 0.27
        if num_subjects:
            net.subject_head[0].weight[0, 0] = 1
            net.subject_head[2].weight[1, 0] = 40
            net.subject_head[2].bias[0] = 0.5
    return net


def square_image() -> torch.Tensor:
    pixels = np.zeros((128, 160, 3), dtype=np.uint8)
    pixels[SQUARE] = 255
    return torch.from_numpy(pixels).permute(2, 0, 1)


def explained(source_view: str = "native", subjects: tuple[str, ...] = ("a", "b"), threshold: float = 0.3):
    views = eval_views(64, 0.8, source_view, 64, 16, subject_head=bool(subjects))
    predictor = Predictor(evidence_net(len(subjects)), list(subjects), views, threshold, device="cpu")
    image = square_image()
    prediction = predictor.predict([Image.fromarray(image.permute(1, 2, 0).numpy())])[0]
    return prediction, {m.head: m for m in explain_image(predictor, image, prediction)}


def check_map(heat: torch.Tensor) -> None:
    assert heat.shape == (128, 160) and torch.isfinite(heat).all()
    assert heat.min() >= 0 and heat.max() <= 1


def peak(heat: torch.Tensor) -> tuple[int, int]:
    row, col = divmod(int(heat.argmax()), heat.shape[1])
    return row, col


def inside_square(row: int, col: int) -> bool:
    return SQUARE[0].start <= row < SQUARE[0].stop and SQUARE[1].start <= col < SQUARE[1].stop


def test_source_heatmap_is_where_the_ai_evidence_is_and_crops_carry_their_own_probability():
    prediction, maps = explained()
    source = maps["source"]
    assert prediction.is_ai
    check_map(source.heat)
    assert source.heat.max() == 1 and inside_square(*peak(source.heat))
    # A 3 x 2 grid of 64 px crops (in the grid's coarse-to-fine order); only the two right-hand bottom crops touch
    # the square.
    black = [(0, 0, 64, 64), (48, 0, 112, 64), (96, 0, 160, 64), (0, 64, 64, 128)]
    assert sorted(source.boxes) == sorted([*black, (48, 64, 112, 128), (96, 64, 160, 128)])
    assert source.heat[:64].max() == 0 and source.heat[64:, :48].max() == 0
    probabilities = source.ai_probabilities
    by_box = dict(zip(source.boxes, probabilities, strict=True))
    assert [by_box[box] for box in black] == pytest.approx([1 / (1 + math.e)] * 4)  # black crops: sigmoid(-1)
    assert by_box[(96, 64, 160, 128)] == max(probabilities) >= prediction.threshold
    # What the boxes say is what the decision averages: the mean of the crops' logits.
    mean_logit = np.mean([math.log(p / (1 - p)) for p in probabilities])
    assert 1 / (1 + math.exp(-mean_logit)) == pytest.approx(prediction.ai_probability, abs=1e-5)


def test_subject_heatmap_is_where_its_evidence_is_placed_back_over_the_view_it_saw():
    prediction, maps = explained()
    subject = maps["subject"]
    assert prediction.subject == "b" and list(maps) == ["subject", "source"]
    check_map(subject.heat)
    left, top, right, bottom = eval_box(160, 128, 64, 0.8)
    assert subject.boxes == [(left, top, right, bottom)] and (left, top) > (0, 0)  # the centre crop: not all of it
    assert inside_square(*peak(subject.heat)) and subject.heat.max() == 1
    outside = torch.ones(128, 160, dtype=torch.bool)
    outside[top:bottom, left:right] = False
    assert subject.heat[outside].max() == 0
    assert subject.caption[0] == f"Object: b ({prediction.subject_confidence:.1%})"


def test_a_real_answer_shows_the_evidence_against_ai_not_the_evidence_for_it():
    prediction, maps = explained(threshold=0.95)
    assert not prediction.is_ai
    check_map(maps["source"].heat)
    assert maps["source"].heat.max() == 0  # the square only ever argued for AI
    assert maps["source"].caption[1].startswith("heat: evidence for 'real photo'")


def test_resized_source_view_maps_the_view_and_source_only_nets_have_one_map():
    _, maps = explained("resized")
    assert maps["source"].boxes == maps["subject"].boxes and maps["source"].ai_probabilities == []
    assert inside_square(*peak(maps["source"].heat))
    _, maps = explained(subjects=())
    assert list(maps) == ["source"] and inside_square(*peak(maps["source"].heat))


def test_grad_cam_leaves_the_net_as_it_found_it():
    net = evidence_net(2).eval()
    net.shared.requires_grad_(False)
    before = {name: p.requires_grad for name, p in net.named_parameters()}
    images = square_image()[None, :, :64, 96:160].contiguous()
    with torch.inference_mode():  # explaining works inside inference mode too
        maps, scores = grad_cam(net, last_block(net), lambda: net(images)[1])
    assert maps.shape == (1, 8, 8) and scores.shape == (1,)
    assert scores == pytest.approx(net(images)[1].detach())
    assert {name: p.requires_grad for name, p in net.named_parameters()} == before
    assert not last_block(net)._forward_hooks


def test_render_heats_what_was_seen_dims_the_rest_and_captions_it(tmp_path):
    _, maps = explained()
    image = square_image()
    picture = render(image, maps["subject"])
    scale = MIN_SIDE / 160  # small images are drawn larger, for the caption
    assert picture.width == MIN_SIDE and picture.height > round(128 * scale)
    pixels = np.asarray(picture).astype(int)
    hot = pixels[round(90 * scale), round(110 * scale)]
    assert hot[0] > hot[2]  # red: the strongest evidence (turbo colormap), over the white square
    assert pixels[2, 2].max() == 0  # black, dimmed: outside the subject's view
    path = write_png(picture, tmp_path / "x.subject.png")
    with Image.open(path) as back:
        assert back.size == picture.size and back.format == "PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["x.subject.png"]  # no temporary file left behind
    big = HeadMap("source", torch.zeros(3000, 4000), [(0, 0, 224, 224)], ("said", "note"), [0.5])
    assert render(torch.zeros(3, 3000, 4000, dtype=torch.uint8), big).width == MAX_SIDE  # large ones smaller


# --- predict.py --explain, with a randomly initialised checkpoint (no training) ---


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return {
        "both": random_checkpoint(folder / "both.ckpt", ["cat", "dog"]),
        "source_only": random_checkpoint(folder / "source.ckpt", []),
    }


@pytest.fixture
def inputs(tmp_path) -> list[Path]:
    """Two files with the same stem in different folders, and a third."""
    return [
        write_image(tmp_path / "a" / "x.png", (48, 40), seed=1),
        write_image(tmp_path / "b" / "x.png", (48, 40), seed=2),
        write_image(tmp_path / "b" / "y.jpg", (70, 30), seed=3),
    ]


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_writes_two_pictures_per_image_under_unique_names(checkpoints, inputs, tmp_path):
    folder = tmp_path / "why"
    code, out, err = run(*map(str, inputs), "--checkpoint", str(checkpoints["both"]), "--explain", str(folder))
    assert (code, err) == (0, "")
    names = ["x.subject.png", "x.source.png", "x-2.subject.png", "x-2.source.png", "y.subject.png", "y.source.png"]
    lines = out.splitlines()
    assert [line.split("  ")[0] for line in lines[::3]] == list(map(str, inputs))
    assert lines[1::3] == [f"  subject heatmap: {folder / n}" for n in names[::2]]
    assert lines[2::3] == [f"  source heatmap: {folder / n}" for n in names[1::2]]
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)
    for name in names:
        with Image.open(folder / name) as picture:
            aspect = 30 / 70 if name.startswith("y") else 40 / 48
            assert picture.format == "PNG" and picture.width == MIN_SIDE and picture.height > MIN_SIDE * aspect


def test_cli_json_records_name_their_pictures_and_source_only_checkpoints_write_one(checkpoints, inputs, tmp_path):
    code, out, _ = run(str(inputs[2]), "--checkpoint", str(checkpoints["both"]), "--json", "--explain", str(tmp_path))
    record = json.loads(out)
    assert code == 0 and record["explain"] == {"subject": str(tmp_path / "y.subject.png"),
                                               "source": str(tmp_path / "y.source.png")}  # fmt: skip
    code, out, _ = run(
        str(inputs[2]), "--checkpoint", str(checkpoints["source_only"]), "--explain", str(tmp_path / "s")
    )
    assert code == 0 and [p.name for p in (tmp_path / "s").iterdir()] == ["y.source.png"]
    code, out, _ = run(str(inputs[2]), "--checkpoint", str(checkpoints["both"]), "--json")
    assert "explain" not in json.loads(out)


def test_cli_explain_usage_errors(checkpoints, inputs, tmp_path, capsys):
    image = str(inputs[0])
    code, out, err = run(image, "--checkpoint", str(tmp_path / "model.onnx"), "--explain", str(tmp_path))
    assert (code, out, err) == (2, "", "predict.py: error: --explain needs a .ckpt checkpoint\n")
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, out, err = run(image, "--checkpoint", str(checkpoints["both"]), "--explain", str(blocker / "why"))
    assert code == 2 and out == "" and err.startswith(f"predict.py: error: --explain {blocker / 'why'}: cannot create")
    with pytest.raises(SystemExit) as exit_info:
        main([str(inputs[0].parent), "--evaluate", "--explain", str(tmp_path)])
    assert exit_info.value.code == 2 and "--explain goes with plain prediction" in capsys.readouterr().err


def test_a_picture_that_cannot_be_written_fails_its_image_with_one_line(checkpoints, inputs, tmp_path, monkeypatch):
    import detective.predict.explain

    def full_disk(picture, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(detective.predict.explain, "write_png", full_disk)
    code, out, err = run(str(inputs[2]), "--checkpoint", str(checkpoints["both"]), "--explain", str(tmp_path))
    assert code == 1 and out == ""
    assert err == (
        f"predict.py: error: {inputs[2]}: cannot write its picture ({tmp_path / 'y.subject.png'}: No space left on "
        "device); free some space or choose another --explain folder\n"
    )


def test_plain_prediction_imports_neither_matplotlib_nor_the_explainer(checkpoints, inputs, tmp_path):
    script = (
        "import io, sys\n"
        "from detective.predict.cli import main\n"
        "def loaded(): return sorted({'matplotlib', 'detective.predict.explain'} & set(sys.modules))\n"
        f"main([{str(inputs[0])!r}, '--checkpoint', {str(checkpoints['both'])!r}], stdout=io.StringIO())\n"
        "print('PLAIN', loaded())\n"
        f"main([{str(inputs[0])!r}, '--checkpoint', {str(checkpoints['both'])!r}, '--explain', {str(tmp_path)!r}],"
        " stdout=io.StringIO())\n"
        "print('EXPLAIN', loaded())\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.stdout.splitlines() == ["PLAIN []", "EXPLAIN ['detective.predict.explain', 'matplotlib']"], proc.stderr


def test_explain_with_a_trained_checkpoint(trained_checkpoint, tiny_tree, tmp_path):
    image = sorted(tiny_tree.rglob("*.png"))[0]
    code, out, _ = run(str(image), "--checkpoint", str(trained_checkpoint), "--json", "--explain", str(tmp_path))
    record = json.loads(out)
    assert code == 0 and set(record["explain"]) == {"subject", "source"}
    for path in record["explain"].values():
        with Image.open(path) as picture:
            assert picture.width == MIN_SIDE and picture.height > MIN_SIDE * 40 / 48


def test_a_source_head_on_taps_is_explained_at_its_deepest_tap():
    torch.manual_seed(0)
    net = DetectiveNet(0, source_taps=[1, 3]).eval()
    crops = square_image()[None, :, :64, 96:160].contiguous()
    maps, scores = grad_cam(net, net.source_block(), lambda: net.source_logits(crops))
    assert maps.shape == (1, 16, 16)  # block 3's maps (stride 4), finer than the last block's 2 x 2
    assert scores == pytest.approx(net.source_logits(crops).detach())
    views = eval_views(64, 0.8, "native", 64, 16, subject_head=False)
    predictor = Predictor(net, [], views, 0.5, device="cpu")
    prediction = predictor.predict([Image.fromarray(square_image().permute(1, 2, 0).numpy())])[0]
    (source,) = explain_image(predictor, square_image(), prediction)
    assert source.head == "source" and source.heat.shape == (128, 160) and len(source.boxes) == 6
