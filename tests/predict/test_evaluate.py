"""`predict.py DIR --evaluate`: the folder read as training reads it, figures that agree with predict.py, files left
alone."""

import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from detective.data.dataset import collate_views
from detective.data.labels import LabelRule
from detective.model.net import DetectiveNet
from detective.predict.cli import main
from detective.predict.evaluate import file_jpeg_quality, label_rule
from detective.predict.predictor import Predictor
from tests.helpers import REPO, write_image


def test_label_rule_comes_from_the_checkpoint_then_the_token_option():
    assert label_rule({}) == LabelRule()
    saved = {"labels": {"token": "gen", "match": "token", "real_folders": ["nature"], "ai_folders": ["synthetic"]}}
    assert label_rule(saved) == LabelRule("gen", "token", ("nature",), ("synthetic",))
    assert label_rule(saved, token="fake").token == "fake"


@pytest.mark.parametrize("quality", [5, 30, 50, 75, 90, 100])
def test_jpeg_quality_is_read_back_from_a_pillow_file(tmp_path, quality):
    path = tmp_path / "x.jpg"
    Image.new("RGB", (16, 16), "red").save(path, quality=quality)
    assert file_jpeg_quality(path) == quality
    assert file_jpeg_quality(write_image(tmp_path / "x.png")) is None


# --- the command, end to end ----------------------------------------------------------------------------------


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def folder(tiny_tree, tmp_path_factory) -> Path:
    """Half the tiny training set as PNG, some as JPEG at three qualities, an unreadable and an unlabelled file."""
    root = tmp_path_factory.mktemp("eval") / "data"
    for path in sorted(tiny_tree.rglob("*.png")):
        if int(path.stem.split("_")[1]) < 4:
            target = root / path.relative_to(tiny_tree)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    for i, quality in enumerate((50, 80, 95)):
        Image.open(tiny_tree / "dog" / f"dog_00{i}_ai.png").save(root / "dog" / f"dog_j{i}_ai.jpg", quality=quality)
    (root / "cat" / "broken.jpg").write_text("not an image")
    write_image(root / "stray.png")
    return root


@pytest.fixture(scope="module")
def varied_checkpoint(trained_checkpoint, folder, tmp_path_factory) -> Path:
    """The tiny checkpoint with its BatchNorm statistics re-estimated on `folder`'s images. After one epoch on
    noise the net gives every image the same answer, which would make every figure agree trivially."""
    raw = torch.load(trained_checkpoint, weights_only=True)
    net = DetectiveNet.from_hparams(raw["hyper_parameters"])
    net.load_state_dict({k.removeprefix("net."): v for k, v in raw["state_dict"].items() if k.startswith("net.")})
    predictor = Predictor.from_checkpoint(trained_checkpoint, device="cpu")
    views = [predictor.load(p) for p in sorted(folder.rglob("*_*.*")) if p.parent != folder]
    batch = collate_views(*zip(*views, strict=True))
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the one batch
    with torch.no_grad():
        net.train()(*batch)
    raw["state_dict"] = {f"net.{k}": v for k, v in net.state_dict().items()}
    path = tmp_path_factory.mktemp("varied") / "varied.ckpt"
    torch.save(raw, path)
    return path


def truth(path: str) -> tuple[str, bool]:
    return Path(path).parent.name, Path(path).stem.endswith("_ai")


def auroc_by_pairs(scored: list[tuple[float, bool]]) -> float:
    ai = [p for p, is_ai in scored if is_ai]
    real = [p for p, is_ai in scored if not is_ai]
    return sum((a > r) + 0.5 * (a == r) for a in ai for r in real) / (len(ai) * len(real))


@pytest.mark.slow
def test_every_figure_agrees_with_the_per_image_predictions_of_predict_py(varied_checkpoint, folder):
    ckpt = str(varied_checkpoint)
    threshold = torch.load(varied_checkpoint, weights_only=True)["hyper_parameters"]["threshold"]
    _, lines, _ = run(str(folder), "--json", "--checkpoint", ckpt)
    preds = [r for r in map(json.loads, lines.splitlines()) if "error" not in r and Path(r["path"]).parent != folder]
    assert len({r["ai_probability"] for r in preds}) > 20  # a net whose answers differ, so figures can disagree
    band = sorted(abs(r["ai_probability"] - threshold) for r in preds)[len(preds) // 2]  # half inside, half out
    code, out, err = run(str(folder), "--evaluate", "--json", "--checkpoint", ckpt, "--uncertain", str(band))
    report = json.loads(out)  # one JSON object, nothing else on stdout
    assert code == 1 and "Traceback" not in err  # exit 1: two images could not be used
    assert sorted(e["path"] for e in report["excluded"]) == sorted(
        [str(folder / "cat/broken.jpg"), str(folder / "stray.png")]
    )
    assert report["images"] == len(preds) == 3 * 8 + 3

    source = report["source"]
    right = [r["is_ai"] == truth(r["path"])[1] for r in preds]
    assert source["accuracy"] == pytest.approx(sum(right) / len(preds))
    assert source["auroc"] == pytest.approx(auroc_by_pairs([(r["ai_probability"], truth(r["path"])[1]) for r in preds]))
    subject_right = [r["subject"] == truth(r["path"])[0] for r in preds]
    assert report["subject"]["accuracy"] == pytest.approx(sum(subject_right) / len(preds))
    assert sum(map(sum, report["subject"]["confusion"])) == len(preds)

    _, lines, _ = run(str(folder), "--json", "--checkpoint", ckpt, "--uncertain", str(band))
    flagged = [json.loads(line) for line in lines.splitlines() if "error" not in line]
    flagged = [r for r in flagged if Path(r["path"]).parent != folder]
    sure = [r for r in flagged if not r["uncertain"]]
    assert 0 < len(sure) < len(flagged)
    assert source["uncertain"]["coverage"] == pytest.approx(len(sure) / len(flagged))
    expected = sum(r["is_ai"] == truth(r["path"])[1] for r in sure) / len(sure)
    assert source["uncertain"]["accuracy_outside"] == pytest.approx(expected)
    assert source["familiarity"]["unfamiliar"] == sum(r["unfamiliar"] for r in flagged)

    quality = report["slices"]["jpeg_quality"]
    assert [(k, quality[k]["n"]) for k in quality] == [("q<70", 1), ("q70-89", 1), ("q>=90", 1), ("non-JPEG", 24)]
    assert report["slices"]["format"]["JPEG"]["n_ai"] == 3 and report["slices"]["size"]["<256px"]["n"] == 27


@pytest.mark.slow
def test_printed_report_lists_every_section_and_the_excluded_files(trained_checkpoint, folder):
    code, out, _ = run(str(folder), "--evaluate", "--checkpoint", str(trained_checkpoint), "--perturb", "blur=1")
    assert code == 1
    for heading in ("Subject head (27 images)", "confusion (rows: truth", "Source head (27 images, 15 AI)",
                    "best threshold on this folder", "optimistic", "Slices", "format=JPEG", "jpeg_quality=q<70",
                    "Robustness (source head)", "blur=1", "Excluded from every figure: 2 images"):  # fmt: skip
        assert heading in out, heading
    assert f"{folder / 'cat/broken.jpg'}: cannot read image" in out


def digests(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_robustness_sweep_scores_perturbed_copies_and_leaves_the_files_alone(varied_checkpoint, folder):
    before = digests(folder)
    code, out, _ = run(str(folder), "--evaluate", "--json", "--checkpoint", str(varied_checkpoint), "--device", "cpu",
                       "--perturb", "jpeg=90,30", "resize=0.5", "blur=2")  # fmt: skip
    assert code == 1 and digests(folder) == before  # exit 1: the unreadable and the unlabelled file
    report = json.loads(out)
    sweep = {r["perturbation"]: r for r in report["robustness"]}
    assert list(sweep) == ["jpeg=90", "jpeg=30", "resize=0.5", "blur=2"]
    for entry in sweep.values():
        assert entry["source"]["n"] == report["images"] and entry["excluded"] == []
        assert set(entry["source"]) == set(report["source"]) - {"uncertain", "familiarity"}
    # The sweep really sees other pixels: a strong blur moves the AI probabilities.
    assert sweep["blur=2"]["source"]["ece"] != report["source"]["ece"]


@pytest.mark.slow
def test_plots_are_real_pngs(varied_checkpoint, folder, tmp_path):
    out_dir = tmp_path / "plots"
    code, out, _ = run(
        str(folder), "--evaluate", "--json", "--checkpoint", str(varied_checkpoint), "--plots", str(out_dir)
    )
    report = json.loads(out)
    assert code == 1
    names = ["subject_confusion.png", "source_roc_pr.png", "source_reliability.png", "most_confidently_wrong.png"]
    assert report["plots"] == [str(out_dir / n) for n in names] and sorted(p.name for p in out_dir.iterdir()) == sorted(
        names
    )
    for name in names:
        with Image.open(out_dir / name) as im:
            im.load()
            assert im.format == "PNG" and min(im.size) >= 300 and max(im.size) <= 3000


@pytest.mark.slow
def test_a_plots_folder_that_cannot_be_made_stops_before_the_work(trained_checkpoint, folder, tmp_path):
    taken = write_image(tmp_path / "taken.png")
    code, out, err = run(str(folder), "--evaluate", "--checkpoint", str(trained_checkpoint), "--plots", str(taken))
    assert (code, out) == (2, "")
    assert err == f"predict.py: error: --plots {taken}: cannot create this folder (File exists); choose another\n"


@pytest.mark.slow
def test_subject_head_off_and_label_rule_come_from_the_checkpoint(trained_checkpoint, folder, tmp_path):
    raw = torch.load(trained_checkpoint, weights_only=True)
    raw["hyper_parameters"].update(subjects=[], labels={"token": "j0"})  # as a source-only run saves it
    gone = ("net.subject_head.", "net.shared.")  # without a subject head, a source head on taps needs neither
    raw["state_dict"] = {k: v for k, v in raw["state_dict"].items() if not k.startswith(gone)}
    ckpt = tmp_path / "source_only.ckpt"
    torch.save(raw, ckpt)
    _, out, _ = run(str(folder), "--evaluate", "--json", "--checkpoint", str(ckpt))
    report = json.loads(out)
    assert report["subject"] is None and "subject head off" in report["notes"][0]
    assert report["label_rule"]["token"] == "j0" and report["source"]["n_ai"] == 1  # only dog_j0_ai.jpg
    _, out, _ = run(str(folder), "--evaluate", "--json", "--checkpoint", str(ckpt), "--token", "ai")
    assert json.loads(out)["source"]["n_ai"] == 15


def test_evaluation_options_are_usage_errors_without_evaluate_or_a_folder(tmp_path, capsys):
    image = write_image(tmp_path / "a.png")
    for argv, message in (
        ([str(image), "--perturb", "jpeg=90"], "--perturb needs --evaluate"),
        ([str(image), "--plots", str(tmp_path)], "--plots needs --evaluate"),
        ([str(image), "--evaluate"], "--evaluate takes one folder of labelled images"),
        ([str(tmp_path), str(tmp_path), "--evaluate"], "--evaluate takes one folder"),
        ([str(tmp_path), "--evaluate", "--perturb", "jpeg=0"], "not a valid jpeg value"),
        ([str(image), "--uncertain", "2"], "must be between 0 and 1"),
        (
            [str(tmp_path), "--evaluate", "--checkpoint", "model.onnx"],
            "--evaluate reads the label rule saved in a .ckpt",
        ),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_evaluation_imports_no_lightning_or_hydra_and_prediction_no_matplotlib(trained_checkpoint, folder):
    image = folder / "cat" / "cat_000.png"
    script = (
        "import io, sys\n"
        "from detective.predict.cli import main\n"
        f"main([{str(image)!r}, '--checkpoint', {str(trained_checkpoint)!r}], stdout=io.StringIO())\n"
        "print('PREDICT', sorted({m.split('.')[0] for m in sys.modules} & {'matplotlib', 'lightning', 'hydra'}))\n"
        f"main([{str(folder)!r}, '--evaluate', '--checkpoint', {str(trained_checkpoint)!r}], stdout=io.StringIO())\n"
        "print('EVALUATE', sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'hydra', 'omegaconf'}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.stdout.splitlines()[-2:] == ["PREDICT []", "EVALUATE []"], proc.stderr


def test_the_metrics_library_is_imported_while_images_are_judged_not_before():
    """torchmetrics takes seconds to import; `evaluate_samples` imports it in a thread beside the predictions, which
    only works while the evaluation driver itself does not import it."""
    script = "import sys, detective.predict.evaluate\nprint([m for m in sys.modules if m.startswith('torchmetrics')])"
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.stdout.splitlines()[-1:] == ["[]"], proc.stderr
