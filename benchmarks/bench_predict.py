"""predict.py speed: cold single-image start-up against the import floor, and batch throughput against the bare model.

    uv run python benchmarks/bench_predict.py [--checkpoint best.ckpt] [--repeats 5] [--batch-size 32] [--device cpu]

Without --checkpoint it trains a tiny one (one epoch at 224 px through `detective.train.run.train`, like the tests),
and it writes 200 deterministic JPEGs of several sizes (phone photos, 4032x3024, included) once into
benchmarks/results/. The checkpoint is also exported to ONNX (`predict.py --export`), which predict.py then runs
with onnxruntime and no torch. Cold starts are fresh processes, the variants interleaved and the median taken,
because the machine is shared and noisy; they may keep bytecode caches, as any install does, even where
PYTHONDONTWRITEBYTECODE is set (every process would otherwise compile every module it imports, torch's included).
Prints a table, writes benchmarks/results/predict.json; `run_benchmark` returns the same figures for other tools.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# (width, height): phone photos both ways, camera/screen sizes, web sizes.
ONNX_COLD = "predict.py one.jpg --checkpoint model.onnx"  # the cold-start row of the ONNX export
SIZES = ((4032, 3024), (3024, 4032), (1920, 1080), (1600, 1200), (1280, 960), (1024, 768), (800, 600), (640, 480))


def write_test_jpeg(path: Path, width: int, height: int, seed: int) -> Path:
    """A JPEG of smooth colour fields plus sensor-like noise (realistic file sizes), the same bytes for a seed;
    written to a temp file and renamed, so an interrupted run never leaves a half-written image."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    noise = rng.normal(0, 8, (height, width, 1)).astype(np.int16)
    pixels = np.clip(np.asarray(coarse, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    tmp = path.with_suffix(".tmp")
    Image.fromarray(pixels).save(tmp, format="JPEG", quality=90)
    tmp.replace(path)
    return path


def make_images(folder: Path, count: int = 200, seed: int = 0) -> list[Path]:
    """`count` JPEGs cycling through `SIZES`; existing files are reused."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [SIZES[i % len(SIZES)] for i in range(count)]
    paths = [folder / f"img_{i:03d}_{w}x{h}.jpg" for i, (w, h) in enumerate(sizes)]
    for i, (path, (w, h)) in enumerate(zip(paths, sizes, strict=True)):
        if not path.is_file():
            write_test_jpeg(path, w, h, seed + i)
    return paths


def make_checkpoint(workdir: Path) -> Path:
    """A real best.ckpt: one epoch of `detective.train.run.train` at 224 px on a tiny generated tree."""
    from detective.train.config import compose_config, quick_run_overrides
    from detective.train.run import train

    rng = np.random.default_rng(0)
    data = workdir / "data"
    for subject in ("cat", "dog", "owl"):
        for i in range(8):
            name = f"{subject}_{i}{'_ai' if i % 2 else ''}.png"
            (data / subject).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(data / subject / name)
    overrides = [
        *quick_run_overrides(data, workdir / "run", image_size=224),
        "data.crop_fraction=0.875",
        "+trainer.enable_progress_bar=false",
        "test=false",
    ]
    train(compose_config(overrides))
    return workdir / "run" / "checkpoints" / "best.ckpt"


_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # bytecode caches, as installed


def _seconds(code: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(code, cwd=REPO, env=_ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def cold_starts(checkpoint: Path, onnx_model: Path, image: Path, repeats: int) -> dict[str, float]:
    """Median seconds of fresh processes, interleaved: the torch+torchvision floor, torch alone, and predict.py with
    the checkpoint, with its ONNX export, and through torchvision."""
    py = sys.executable
    full_path = (  # predict.py as it would be if it built the net through DetectiveNet (torchvision)
        "import detective.predict.checkpoint as c, sys; b = c.CheckpointInfo.build_net; "
        "c.CheckpointInfo.build_net = lambda self, lite=True: b(self, lite=False); "
        "from detective.predict.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    args = [str(image), "--checkpoint", str(checkpoint), "--device", "cpu"]
    variants = {
        "import torch, torchvision": [py, "-c", "import torch, torchvision"],
        "import torch": [py, "-c", "import torch"],
        "predict.py one.jpg": [py, str(REPO / "predict.py"), *args],
        ONNX_COLD: [py, str(REPO / "predict.py"), str(image), "--checkpoint", str(onnx_model), "--device", "cpu"],
        "predict.py, full path (torchvision)": [py, "-c", full_path, *args],
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for cmd in variants.values():  # warm the file and bytecode caches once, for every variant alike
        _seconds(cmd)
    for _ in range(repeats):
        for name, cmd in variants.items():
            times[name].append(_seconds(cmd))
    return {name: statistics.median(t) for name, t in times.items()}


def throughput(
    checkpoint: Path,
    onnx_model: Path,
    images: list[Path],
    batch_size: int,
    device: str,
    repeats: int,
    threads: int | None = None,
) -> dict[str, float]:
    """Images per second: the bare forward on one batch's ready views vs `Predictor.predict` on the JPEG files, and
    the ONNX export's `OnnxPredictor.predict` (numpy transform, onnxruntime) on the same files.

    `threads` sets torch's and onnxruntime's CPU threads (default: each library's own choice).
    """
    import torch

    from detective.predict.onnx_runtime import OnnxPredictor
    from detective.predict.predictor import Predictor

    if threads:
        torch.set_num_threads(threads)
    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    onnx_predictor = OnnxPredictor.from_file(onnx_model, device=device, threads=threads)
    ready = [predictor.load(path) for path in images[:batch_size]]  # one batch's views, decoded once
    n_batches = math.ceil(len(images) / batch_size)

    def bare() -> float:
        start = time.perf_counter()
        for _ in range(n_batches):
            predictor.predict_views(ready)
        if predictor.device.type == "cuda":
            torch.cuda.synchronize()
        return n_batches * batch_size / (time.perf_counter() - start)

    def pipeline(chosen: Any = predictor) -> float:
        start = time.perf_counter()
        results = chosen.predict(images, batch_size=batch_size)
        assert all(hasattr(r, "subject") for r in results), "a benchmark image failed to decode"
        return len(images) / (time.perf_counter() - start)

    for warm in (predictor, onnx_predictor):  # warm-up: allocator, kernels, file cache
        warm.predict(images[:batch_size], batch_size=batch_size)
    runs: dict[str, list[float]] = {"bare": [], "pipeline": [], "pipeline_onnx": []}
    for _ in range(repeats):
        runs["bare"].append(bare())
        runs["pipeline"].append(pipeline())
        runs["pipeline_onnx"].append(pipeline(onnx_predictor))
    return {name: statistics.median(v) for name, v in runs.items()}


def run_benchmark(
    checkpoint: str | Path | None = None,
    repeats: int = 5,
    batch_size: int = 32,
    device: str = "cpu",
    image_dir: str | Path = RESULTS / "predict_images",
    threads: int | None = None,
) -> dict[str, Any]:
    """All figures as one dict (also what predict.json holds)."""
    from detective.predict.onnx_export import export_onnx

    images = make_images(Path(image_dir))
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(checkpoint) if checkpoint else make_checkpoint(Path(tmp))
        onnx_model = export_onnx(ckpt, Path(tmp) / "model.onnx").path
        cold = cold_starts(ckpt, onnx_model, images[0], repeats)
        speed = throughput(ckpt, onnx_model, images, batch_size, device, max(3, repeats // 2), threads)
    floor = cold["import torch, torchvision"]
    return {
        "cold_start_s": cold,
        "cold_start_vs_floor": {name: t / floor for name, t in cold.items()},
        "throughput_img_s": speed,
        "throughput_ratio": speed["pipeline"] / speed["bare"],
        "batch_size": batch_size,
        "device": device,
        "torch_threads": threads,
        "images": len(images),
        "repeats": repeats,
    }


def print_table(r: dict[str, Any]) -> None:
    print(f"\nCold single-image start (median of {r['repeats']} fresh processes, interleaved)")
    for name, t in r["cold_start_s"].items():
        print(f"  {name:<44} {t:7.2f} s  {r['cold_start_vs_floor'][name]:5.2f}x floor")
    s = r["throughput_img_s"]
    threads = r["torch_threads"] or "default"
    print(f"\nThroughput, {r['images']} JPEGs, batch {r['batch_size']}, {r['device']}, torch threads {threads}")
    print(f"  {'bare model forward':<44} {s['bare']:7.1f} img/s")
    print(f"  {'predict (decode + transform + model)':<44} {s['pipeline']:7.1f} img/s  {r['throughput_ratio']:.0%}")
    print(f"  {'predict, ONNX model (onnxruntime)':<44} {s['pipeline_onnx']:7.1f} img/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads for the throughput part")
    args = parser.parse_args()
    result = run_benchmark(args.checkpoint, args.repeats, args.batch_size, args.device, threads=args.threads)
    print_table(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "predict.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nWrote {RESULTS / 'predict.json'}")


if __name__ == "__main__":
    main()
