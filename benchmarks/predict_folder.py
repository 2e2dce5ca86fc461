"""predict.py on whole folders: wall time and peak memory, beside a same-run reference for the network's cost.

    uv run python benchmarks/predict_folder.py --checkpoint best.ckpt [--folder ../shared/data/realorai_dev]
        [--phone 40] [--threads 2] [--rounds 3]

Per folder (the given one, and `--phone` generated 4032x3024 JPEGs of 12 MP), each a fresh process timed as a
whole, its peak resident memory taken from the kernel (`wait4`), every variant in turn for `--rounds` rounds:
- reference: Pillow decodes each file and a bare eager torchvision MobileNetV2, blocks 0-10, runs on the same crops
  the checkpoint judges (its grid), 64 at a time: the network's cost without any of detective's levers;
- `predict.py --json` with the checkpoint as it is, and with a copy of it that judges every crop of every image
  (`model.settle_crops=0`); `--evaluate` on the same files; and the checkpoint's ONNX export (`--export`, needs the
  `onnx` extra) through onnxruntime.
The machine is shared and noisy, so the figures to compare are the medians of the ratios to the same round's reference.
Rows go to benchmarks/results/predict_folder.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))

from detect import whole_process  # noqa: E402

PHONE = (4032, 3024)
REFERENCE = "reference (Pillow + bare eager blocks 0-10)"
REFERENCE_BATCH = 64


def measured(cmd: list[str], threads: int) -> dict[str, float]:
    """Wall seconds and peak resident MB of one fresh process (its output discarded; a failure is an error)."""
    with tempfile.TemporaryFile() as err:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        seconds, peak_mb, code = whole_process(cmd, subprocess.DEVNULL, err, env)
        if code != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{err.read().decode()[-2000:]}")
    return {"seconds": seconds, "peak_mb": peak_mb}


def reference(checkpoint: Path, folder: Path, threads: int) -> None:
    """The reference workload, in this process: decode, crop the checkpoint's grid, bare eager blocks 0-10."""
    import numpy as np
    import torch
    import torchvision
    from PIL import Image

    from detective.data.geometry import ViewSettings, crop_grid
    from detective.predict.checkpoint import read_checkpoint
    from detective.predict.discover import expand_inputs

    torch.set_num_threads(threads)
    views = ViewSettings.from_hparams(read_checkpoint(checkpoint).hparams)
    blocks = torchvision.models.mobilenet_v2().features[:11].eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    pending: list[np.ndarray] = []

    def run(crops: list[np.ndarray]) -> None:
        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255)
        blocks((x - mean) / std)

    with torch.inference_mode():
        for path in expand_inputs([str(folder)]).files:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            h, w = pixels.shape[:2]
            size = views.source_crop
            for x, y in crop_grid(w, h, size, views.source_crops):
                crop = np.zeros((size, size, 3), np.uint8)
                part = pixels[y : y + size, x : x + size]
                crop[: part.shape[0], : part.shape[1]] = part
                pending.append(crop)
            while len(pending) >= REFERENCE_BATCH:
                run(pending[:REFERENCE_BATCH])
                del pending[:REFERENCE_BATCH]
        if pending:
            run(pending)


def every_crop_copy(checkpoint: Path, folder: Path) -> Path:
    """The checkpoint with settling off: every crop of every image judged."""
    import torch

    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    raw["hyper_parameters"] = {**raw["hyper_parameters"], "settle_crops": 0}
    path = folder / "every_crop.ckpt"
    torch.save(raw, path)
    return path


def phone_folder(count: int) -> Path:
    """`count` 12 MP JPEGs (written once into benchmarks/results/phone_photos)."""
    from bench_predict import write_test_jpeg

    folder = RESULTS / "phone_photos"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / f"phone_{i:03d}.jpg"
        if not path.is_file():
            write_test_jpeg(path, *PHONE, seed=1000 + i)
    return folder


def rows_for(
    checkpoint: Path, every_crop: Path, onnx_model: Path, folder: Path, threads: int, rounds: int
) -> list[dict[str, Any]]:
    """The variants on one folder, run in turn `rounds` times (each run printed as it finishes): per variant the median
    wall time, the largest peak, and the median of its ratios to the same round's reference."""
    from detective.predict.discover import expand_inputs

    py, predict = sys.executable, str(REPO / "predict.py")
    common = ["--json", "--no-progress", "--device", "cpu", "--threads", str(threads), str(folder)]
    reference_run = [py, __file__, "--reference", "--checkpoint", str(checkpoint), "--folder", str(folder)]
    variants = {
        REFERENCE: [*reference_run, "--threads", str(threads)],
        "predict.py": [py, predict, "--checkpoint", str(checkpoint), *common],
        "predict.py, every crop (settle_crops=0)": [py, predict, "--checkpoint", str(every_crop), *common],
        "predict.py --evaluate": [py, predict, "--checkpoint", str(checkpoint), "--evaluate", *common],
        "predict.py, ONNX export": [py, predict, "--checkpoint", str(onnx_model), *common],
    }
    if not (folder / "ai").is_dir():
        del variants["predict.py --evaluate"]  # --evaluate needs labels: the generated phone photos have none
    images = len(list(expand_inputs([str(folder)]).files))
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for round_ in range(1, rounds + 1):
        for name, cmd in variants.items():
            figures = measured(cmd, threads)
            runs[name].append(figures)
            print(f"  round {round_}: {name:<44} {figures['seconds']:7.1f} s  {figures['peak_mb']:6.0f} MB", flush=True)
    reference_seconds = [figures["seconds"] for figures in runs[REFERENCE]]
    rows = []
    for name, figures in runs.items():
        seconds = [f["seconds"] for f in figures]
        rows.append(
            {
                "folder": str(folder),
                "images": images,
                "variant": name,
                "seconds": statistics.median(seconds),
                "seconds_each": seconds,
                "peak_mb": max(f["peak_mb"] for f in figures),
                "vs_reference": statistics.median(s / r for s, r in zip(seconds, reference_seconds, strict=True)),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--folder", type=Path, default=REPO.parent / "shared" / "data" / "realorai_dev")
    parser.add_argument("--phone", type=int, default=40, help="generated 12 MP JPEGs (0: none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="runs of every variant, in turn (medians are reported)")
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)  # the reference's own process
    args = parser.parse_args()
    if args.reference:
        reference(args.checkpoint, args.folder, args.threads)
        return
    from detective.predict.onnx_export import export_onnx

    folders = [args.folder] + ([phone_folder(args.phone)] if args.phone else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        every_crop = every_crop_copy(args.checkpoint, Path(tmp))
        onnx_model = export_onnx(args.checkpoint, Path(tmp) / "model.onnx").path
        for folder in folders:
            print(f"\n{folder}")
            rows += rows_for(args.checkpoint, every_crop, onnx_model, folder, args.threads, args.rounds)
    print(f"\nMedians of {args.rounds} rounds; wall time as a share of the same round's reference (median):")
    for row in rows:
        rate = row["images"] / row["seconds"]
        print(
            f"  {Path(row['folder']).name:<16} {row['variant']:<44} {row['seconds']:7.1f} s  {rate:5.2f} photos/s"
            f"  {row['peak_mb']:6.0f} MB  {row['vs_reference']:.2f}x"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "predict_folder.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
