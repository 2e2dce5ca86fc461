"""Where detective stands against the original TensorFlow figures, measured in one run.

    uv run python benchmarks/bench.py [--quick] [--repeats N] [--out results/bench.json] [--skip predict,train]

Sections (names for --skip): `loader` (detective's data pipeline vs a naive PIL + DataLoader, on generated 256x256,
640x480 and 4032x3024 JPEG sets: with the decoded-image cache as training uses it from its second epoch, and
decoding every image as a first epoch does), `model` (forward, frozen-backbone and full training steps of
DetectiveNet with the default speed settings vs the bare torchvision MobileNetV2 in eager mode, batch 32, 224 px,
float32, each in a process set up as in real use; then the opt-in levers reuse_freed_memory, the traced backbone,
bf16, cached features and torch.compile), `train` (end-to-end `train.py` on the demo recipe),
`predict` (predict.py cold start, via bench_predict.py), `gpu` (bf16 training at batch 256 and whether the GPU waits
on data; only where CUDA is present). Every figure is a median of repeats after a warm-up, baseline and detective
interleaved, because the machine is shared and noisy. Prints a table and writes JSON. Nothing here asserts timings.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from PIL import Image
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]  # detective and bench_predict, however this file is started

from bench_predict import write_test_jpeg  # noqa: E402

from detective.constants import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from detective.data.cache import DecodedCache  # noqa: E402
from detective.data.dataset import ImageDataset, collate_skip_failed  # noqa: E402
from detective.data.geometry import DEFAULT_CROP_FRACTION  # noqa: E402
from detective.data.scan import Sample  # noqa: E402
from detective.data.transforms import resize_size  # noqa: E402
from detective.data.views import Views, eval_views  # noqa: E402
from detective.memory import reuse_freed_memory  # noqa: E402
from detective.model.net import DetectiveNet, freeze_backbone, unfreeze_backbone  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SECTIONS = ("loader", "model", "train", "predict", "gpu")
IMAGE_SIZE, BATCH, WORKERS = 224, 32, 2

# The original's figures on a 2-core machine (medians, batch 32, 224x224, float32), img/s.
ORIGINAL_TF = {
    "loader 256x256": 4083,
    "loader 640x480": 1643,
    "loader 4032x3024": 59,
    "forward": 201,
    "train step, backbone frozen": 185,
    "train step, full fine-tuning": 35,
}
# (name, width, height, images in the default run, in --quick)
JPEG_SETS = (("256x256", 256, 256, 256, 96), ("640x480", 640, 480, 256, 96), ("4032x3024", 4032, 3024, 48, 16))


@dataclass
class Row:
    """One line of the table: detective's figure, its baseline's, and the original's where it published one."""

    stage: str
    detective: float
    baseline: float | None = None
    unit: str = "img/s"
    original: str | None = None  # the ORIGINAL_TF stage this row compares with, when not its own name

    def as_dict(self) -> dict[str, Any]:
        tf = ORIGINAL_TF.get(self.original or self.stage)
        return {
            "stage": self.stage,
            "unit": self.unit,
            "detective": self.detective,
            "baseline": self.baseline,
            "ratio": self.detective / self.baseline if self.baseline else None,
            "original_tf": tf,
            "vs_original": self.detective / tf if tf else None,
        }


# ---------------------------------------------------------------------------------------------------- JPEG sets


def make_jpegs(folder: Path, width: int, height: int, count: int, seed: int = 0) -> list[Path]:
    """`count` JPEGs of one size, the same bytes every run; existing files are reused."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"img_{i:03d}.jpg" for i in range(count)]
    for i, path in enumerate(paths):
        if not path.is_file():
            write_test_jpeg(path, width, height, seed + i)
    return paths


# ---------------------------------------------------------------------------------------------------- loader


class NaiveDataset(Dataset):
    """The plain-PyTorch first try: PIL open -> RGB -> resize to 224x224 -> ToTensor -> Normalize."""

    def __init__(self, paths: list[Path]) -> None:
        from torchvision import transforms

        self.paths = paths
        self.transform = transforms.Compose(
            [
                transforms.Resize((IMAGE_SIZE, IMAGE_SIZE)),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[i]) as im:
            return self.transform(im.convert("RGB")), 0


def resized_views() -> Views:
    """The one downscaled, centre-cropped view of `data.source_view=resized`: what these loader figures measure."""
    return eval_views(IMAGE_SIZE, DEFAULT_CROP_FRACTION, "resized", IMAGE_SIZE, 1, subject_head=True)


def detective_loader(paths: list[Path], cache_dir: Path | None = None) -> DataLoader:
    """Detective's pipeline as training and evaluation use it: JPEG draft decode (or the decoded-image cache when
    `cache_dir` is given), resize, crop, uint8 batches in channels_last."""
    samples = [Sample(path=p, subject="x", is_ai=False) for p in paths]
    cache = DecodedCache(cache_dir, resize_size(IMAGE_SIZE)) if cache_dir else None
    dataset = ImageDataset(samples, ["x"], resized_views(), cache=cache)
    return DataLoader(
        dataset,
        batch_size=BATCH,
        num_workers=WORKERS,
        collate_fn=collate_skip_failed,
        persistent_workers=True,
    )


def naive_loader(paths: list[Path]) -> DataLoader:
    return DataLoader(NaiveDataset(paths), batch_size=BATCH, num_workers=WORKERS, persistent_workers=True)


def epoch_rate(loader: DataLoader) -> float:
    """Images per second over one full epoch. Workers persist (as in detective's datamodule) and the warm-up
    epoch starts them, so the figure is the steady state the original's tf.data numbers describe."""
    start = time.perf_counter()
    n = sum(len(batch[0]) for batch in loader)
    return n / (time.perf_counter() - start)


def interleaved(variants: dict[str, Callable[[], float]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median of `repeats` runs of each variant after `warmup` runs, taken in turns so that noise hits all alike."""
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(warmup + repeats):
        for name, fn in variants.items():
            value = fn()
            if i >= warmup:
                runs[name].append(value)
    return {name: statistics.median(v) for name, v in runs.items()}


def bench_loader(quick: bool, repeats: int) -> list[Row]:
    """Per size: the cached loader (its warm-up epoch fills a fresh cache), the decoding loader, the naive one."""
    rows = []
    for name, w, h, count, quick_count in JPEG_SETS:
        paths = make_jpegs(RESULTS / "bench_images" / name, w, h, quick_count if quick else count)
        print(f"loader {name}: {len(paths)} JPEGs ...", flush=True)
        with tempfile.TemporaryDirectory() as cache_dir:
            loaders = {
                "cached": detective_loader(paths, Path(cache_dir)),
                "decoding": detective_loader(paths),
                "naive": naive_loader(paths),
            }
            rates = interleaved({k: lambda a=v: epoch_rate(a) for k, v in loaders.items()}, repeats)
        rows.append(Row(f"loader {name}", rates["cached"], rates["naive"]))
        first_epoch = "  decoding every image (no cache yet)"
        rows.append(Row(first_epoch, rates["decoding"], rates["naive"], original=f"loader {name}"))
    return rows


# ---------------------------------------------------------------------------------------------------- model


def bare_mobilenet() -> torch.nn.Module:
    import torchvision

    return torchvision.models.mobilenet_v2(weights=None)


def detective_net(compile: bool = False, cache_features: bool = False, frozen_backbone: str = "folded") -> DetectiveNet:
    """DetectiveNet with the speed settings train.py uses by default (conf/model): channels_last, and a frozen
    backbone with BatchNorm folded; the arguments as `model.compile` / `model.cache_features` /
    `model.frozen_backbone` set them."""
    return DetectiveNet(4).set_speed(compile=compile, cache_features=cache_features, frozen_backbone=frozen_backbone)


def make_step(
    net: torch.nn.Module,
    detective: bool,
    mode: str,
    batch: int,
    device: str,
    bf16: bool = False,
    freeze_batchnorm: bool = True,
):
    """A closure running one forward (mode "forward") or training step ("frozen", "full") on a fixed batch.

    Detective takes uint8 batches in channels_last (what its loader hands it) and normalises inside; the bare
    model takes float batches already normalised (what the naive loader hands it). Detective's forward runs the
    backbone in its inference form (as a frozen backbone does); its full step keeps BatchNorm's statistics, as
    train.py fine-tunes pretrained weights by default, unless not `freeze_batchnorm`. Loss: detective's two heads
    (CE + 1.5 BCE), the bare model's CE.
    """
    net = net.to(device)
    shape = (batch, 3, IMAGE_SIZE, IMAGE_SIZE)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    if not detective:
        images = torch.randn(shape, device=device)
    subjects = torch.randint(0, 4, (batch,), device=device)
    sources = torch.randint(0, 2, (batch,), device=device).float()

    if mode == "forward":
        if detective:
            freeze_backbone(net)
        net.eval()

        def forward() -> None:
            with torch.inference_mode(), torch.autocast(device, torch.bfloat16, enabled=bf16):
                net(images)

        return forward

    net.train()
    if mode == "full" and detective:
        unfreeze_backbone(net, keep_statistics=freeze_batchnorm)
    if mode == "frozen":
        if detective:
            freeze_backbone(net)
        else:
            net.features.requires_grad_(False)
            net.features.eval()
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3, weight_decay=1e-4)

    def step(x: torch.Tensor = images) -> None:
        with torch.autocast(device, torch.bfloat16, enabled=bf16):
            if detective:
                subject_logits, source_logits = net(x)
                loss = F.cross_entropy(subject_logits, subjects[: len(x)]) + 1.5 * F.binary_cross_entropy_with_logits(
                    source_logits.float(), sources[: len(x)]
                )
            else:
                loss = F.cross_entropy(net(x), subjects[: len(x)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def step_rate(step: Callable[[], None], batch: int, steps: int, device: str) -> float:
    """Images per second: the median step time of `steps` timed steps."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


@dataclass(frozen=True)
class StepSpec:
    """A model variant to time: detective's net (with its speed options) or the bare torchvision one."""

    detective: bool
    mode: str  # "forward", "frozen" or "full", as in `make_step`
    compile: bool = False
    cache_features: bool = False
    bf16: bool = False
    freeze_batchnorm: bool = True
    frozen_backbone: str = "folded"

    def build(self, batch: int, device: str) -> Callable[[], None]:
        options = (self.compile, self.cache_features, self.frozen_backbone)
        net = detective_net(*options) if self.detective else bare_mobilenet()
        return make_step(net, self.detective, self.mode, batch, device, self.bf16, self.freeze_batchnorm)


class StepProcess:
    """A spawned process that builds model variants and times them on request. Its C library's memory setting
    is glibc's defaults, as train.py and a plain PyTorch script have them, or `reuse_freed_memory` as train.py
    applies it when asked to (a process-wide setting, hence one process per kind)."""

    def __init__(self, reuse_memory: bool, specs: dict[str, StepSpec], batch: int = BATCH) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve_steps, args=(child, reuse_memory, specs, batch), daemon=True)
        self.process.start()
        self.build_seconds: dict[str, float] = self.conn.recv()  # building, and the first step (compilation)

    def rate(self, name: str, steps: int) -> float:
        self.conn.send((name, steps))
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.process.join()


def _serve_steps(conn: Connection, reuse_memory: bool, specs: dict[str, StepSpec], batch: int) -> None:
    if reuse_memory:
        reuse_freed_memory()
    torch.manual_seed(0)
    steps, seconds = {}, {}
    for name, spec in specs.items():
        start = time.perf_counter()
        steps[name] = spec.build(batch, "cpu")
        steps[name]()
        seconds[name] = time.perf_counter() - start
    conn.send(seconds)
    while (request := conn.recv()) is not None:
        name, count = request
        conn.send(step_rate(steps[name], batch, count, "cpu"))


def bench_model(quick: bool, repeats: int) -> list[Row]:
    """Forward and training throughput; each repeat times a few steps per variant, the variants in turns.
    Detective's variants run in a process set up as train.py sets it up, the bare model in a plain one; a third
    process runs detective with `reuse_freed_memory` on, to show what that opt-in alone is worth on one image size.
    Also the other opt-in levers: the traced backbone (`model.frozen_backbone=jit`), bf16 autocast, and on full
    fine-tuning torch.compile (its compile time reported) and
    BatchNorm re-estimating its statistics (the bare model's way; detective keeps pretrained ones by default)."""
    stages = {"forward": "forward", "frozen": "train step, backbone frozen", "full": "train step, full fine-tuning"}
    steps = 2 if quick else 3
    rows = []
    for mode, stage in stages.items():
        print(f"model {mode} ...", flush=True)
        ours = {"detective": StepSpec(True, mode), "bf16": StepSpec(True, mode, bf16=True)}
        if mode != "full":  # the traced form serves a frozen backbone only
            ours["jit"] = StepSpec(True, mode, frozen_backbone="jit")
        if mode == "frozen":  # the same batch every step: the steady state of epochs 2+ without augmentation
            ours["cached"] = StepSpec(True, mode, cache_features=True)
        if mode == "full":
            print("  with model.compile=true too ...", flush=True)
            ours["compiled"] = StepSpec(True, mode, compile=True)
            ours["batch statistics"] = StepSpec(True, mode, freeze_batchnorm=False)
        fast = StepProcess(False, ours)
        reusing = StepProcess(True, {"detective": StepSpec(True, mode)})
        bare = StepProcess(False, {"bare": StepSpec(False, mode)})
        variants = {name: partial(fast.rate, name, steps) for name in ours}
        variants["reuse"] = partial(reusing.rate, "detective", steps)
        variants["bare"] = partial(bare.rate, "bare", steps)
        rates = interleaved(variants, repeats, warmup=2)  # the heap settles after a few steps
        for process in (fast, reusing, bare):
            process.close()
        compile_seconds = fast.build_seconds.get("compiled")
        rows.append(Row(stage, rates["detective"], rates["bare"]))
        reuse = "  reuse_freed_memory=true (one image size)"
        rows.append(Row(reuse, rates["reuse"], rates["bare"], original=stage))
        if "jit" in rates:
            rows.append(Row(f"  {mode}, model.frozen_backbone=jit", rates["jit"], rates["bare"], original=stage))
        rows.append(Row(f"  {mode}, trainer.precision=bf16-mixed", rates["bf16"], rates["bare"], original=stage))
        if mode == "frozen":
            cached = "  frozen, features cached (no augmentation, epoch 2+)"
            rows.append(Row(cached, rates["cached"], rates["bare"], original=stage))
        if mode == "full":
            statistics_row = "  full, BatchNorm statistics re-estimated (model.freeze_batchnorm=false)"
            rows.append(Row(statistics_row, rates["batch statistics"], rates["bare"], original=stage))
            rows.append(Row("  full, model.compile=true", rates["compiled"], rates["bare"], original=stage))
            rows.append(Row("  torch.compile time, once per run", compile_seconds, unit="s"))
    return rows


# ---------------------------------------------------------------------------------------------------- train.py


class EpochTimer(Callback):
    """Wall time and image count of each training epoch (validation excluded), written to `out` as JSON."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.epochs: list[dict[str, float]] = []
        self._start = 0.0
        self._images = 0
        self._end: float | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._images, self._end = time.perf_counter(), 0, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += len(batch[0]) if batch is not None else 0
        self._end = time.perf_counter()  # the last training batch ends the epoch's training part

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epochs.append({"seconds": (self._end or time.perf_counter()) - self._start, "images": self._images})
        self.out.write_text(json.dumps(self.epochs))


def bench_train(quick: bool) -> list[Row]:
    """`train.py`'s demo recipe in-process for a few epochs; img/s of the training part, first epoch excluded."""
    from detective.train.config import compose_config
    from detective.train.run import train

    epochs = 2 if quick else 4
    print(f"train.py demo recipe, {epochs} epochs ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        timing = Path(tmp) / "epochs.json"
        overrides = [
            f"trainer.max_epochs={epochs}",
            "trainer.enable_model_summary=false",
            "+trainer.enable_progress_bar=false",
            "~callbacks.progress_bar",
            "~callbacks.early_stopping",
            "test=false",
            f"paths.output_dir={tmp}/run",
            "+callbacks.bench_timer._target_=bench.EpochTimer",
            f"+callbacks.bench_timer.out={timing}",
        ]
        cfg = compose_config(overrides)
        train(cfg)
        measured = json.loads(timing.read_text())[1:]
    rate = statistics.median(e["images"] / e["seconds"] for e in measured)
    return [Row(f"train.py demo ({cfg.data.image_size} px, batch {cfg.data.batch_size})", rate)]


# ---------------------------------------------------------------------------------------------------- predict.py


def bench_predict(repeats: int) -> tuple[list[Row], dict[str, Any]]:
    from bench_predict import ONNX_COLD, run_benchmark

    print("predict.py cold start (bench_predict) ...", flush=True)
    result = run_benchmark(repeats=repeats)
    cold = result["cold_start_s"]
    rows = [
        Row("predict.py one.jpg, cold", cold["predict.py one.jpg"], cold["import torch, torchvision"], "s"),
        Row("predict.py one.jpg, ONNX model, cold", cold[ONNX_COLD], cold["import torch, torchvision"], "s"),
        Row(
            "predict (decode+model)",
            result["throughput_img_s"]["pipeline"],
            result["throughput_img_s"]["bare"],
        ),
    ]
    return rows, result


# ---------------------------------------------------------------------------------------------------- GPU


def bench_gpu(quick: bool, repeats: int) -> list[Row]:
    """bf16 training at batch 256, and the share of wall time the GPU computes while detective's loader feeds it."""
    batch, steps = 256, 3 if quick else 5
    rows = []
    for mode in ("frozen", "full"):
        ours = StepSpec(True, mode, bf16=True).build(batch, "cuda")
        bare = StepSpec(False, mode, bf16=True).build(batch, "cuda")
        rates = interleaved(
            {
                "detective": lambda s=ours: step_rate(s, batch, steps, "cuda"),
                "bare": lambda s=bare: step_rate(s, batch, steps, "cuda"),
            },
            repeats,
        )
        rows.append(Row(f"GPU bf16 batch {batch}, {mode}", rates["detective"], rates["bare"]))
    rows.append(Row("GPU busy share, loader-fed (640x480)", gpu_busy_share(batch), unit="%"))
    return rows


def gpu_busy_share(batch: int) -> float:
    """Percent of one epoch's wall time the GPU spends in training steps (CUDA events) while the loader feeds it."""
    name, w, h, count, _ = JPEG_SETS[1]
    paths = make_jpegs(RESULTS / "bench_images" / name, w, h, count)
    workers = os.cpu_count() or WORKERS
    samples = [Sample(path=p, subject="x", is_ai=False) for p in paths] * max(1, 4 * workers * batch // len(paths))
    dataset = ImageDataset(samples, ["x"], resized_views())
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, collate_fn=collate_skip_failed, pin_memory=True)
    step = StepSpec(True, "full", bf16=True).build(batch, "cuda")
    step()  # warm-up
    events = []
    batches = iter(loader)
    step(next(batches)[0].to("cuda"))  # worker start-up and the first batch are not the steady state
    torch.cuda.synchronize()
    start = time.perf_counter()
    for images, *_ in batches:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        step(images.to("cuda", non_blocking=True))
        end.record()
        events.append((begin, end))
    torch.cuda.synchronize()
    wall = time.perf_counter() - start
    busy = sum(b.elapsed_time(e) for b, e in events) / 1000
    return 100 * busy / wall


# ---------------------------------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15": os.getloadavg(),  # other work on a shared machine skews every figure
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.2f}{unit}" if unit in ("s", "x") else f"{value:,.1f}{unit}"


def print_table(rows: list[dict[str, Any]]) -> None:
    header = f"{'stage':<42} {'detective':>11} {'baseline':>11} {'ratio':>7} {'original TF':>11} {'vs original':>11}"
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        unit = {"img/s": "", "s": "s", "%": "%"}[r["unit"]]
        print(
            f"{r['stage']:<42} {_fmt(r['detective'], unit):>11} {_fmt(r['baseline'], unit):>11} "
            f"{_fmt(r['ratio'], 'x'):>7} {_fmt(r['original_tf']):>11} {_fmt(r['vs_original'], 'x'):>11}"
        )
    print("img/s unless marked; ratio = detective / baseline; vs original = detective / original TF (higher is better")
    print("except for seconds). Baselines: naive PIL + DataLoader, bare torchvision MobileNetV2, import torch floor.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller image sets and fewer repeats (~2 minutes)")
    parser.add_argument("--repeats", type=int, help="timed repeats per figure (default 3, quick 2)")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench.json")
    parser.add_argument("--skip", default="", help=f"comma-separated sections to skip: {','.join(SECTIONS)}")
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if unknown := skip - set(SECTIONS):
        parser.error(f"unknown section(s) in --skip: {', '.join(sorted(unknown))}; use {', '.join(SECTIONS)}")
    repeats = args.repeats or (2 if args.quick else 3)

    rows: list[Row] = []
    extra: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for section in SECTIONS:
        start = time.perf_counter()
        if section in skip:
            continue
        if section == "loader":
            rows += bench_loader(args.quick, repeats)
        elif section == "model":
            rows += bench_model(args.quick, repeats)
        elif section == "train":
            rows += bench_train(args.quick)
        elif section == "predict" and args.quick:
            print("predict: skipped in --quick (bench_predict has no cold-start-only mode)")
        elif section == "predict":
            predict_rows, extra["predict"] = bench_predict(repeats)
            rows += predict_rows
        elif section == "gpu" and torch.cuda.is_available():
            rows += bench_gpu(args.quick, repeats)
        elif section == "gpu":
            print("no GPU: skipped")
        seconds[section] = round(time.perf_counter() - start, 1)

    table = [r.as_dict() for r in rows]
    print_table(table)
    print(f"Seconds per section: {seconds}")
    report = {"machine": machine(), "quick": args.quick, "repeats": repeats, "section_seconds": seconds}
    report.update(rows=table, **extra)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nWrote {args.out}")


if __name__ == "__main__":
    main()
