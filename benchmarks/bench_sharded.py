"""`predict.py DIR --devices N --out OUT` on many small images: throughput, memory over the run, and a kill + rerun.

    uv run python benchmarks/bench_sharded.py [--images 20000] [--devices 2] [--accelerator cpu]
                                              [--checkpoint best.ckpt] [--work /tmp/detective-sharded]

Writes `--images` 64x64 JPEGs once under --work (not in the repository). Without --checkpoint it saves the demo
recipe's net at 64 px with native crops (64 px view, native 64 px crops) with random weights: prediction costs
what a trained one's does.
Then, with the same command line each time (timings are whole processes, start-up included):

1. a full run into a fresh folder, sampling every process's resident memory (the launching process, the other
   ranks and their DataLoader workers) twice a second: throughput, and each process's RSS when 10%, 50% and 90% of
   the images were written, with its peak;
2. a run into another fresh folder, killed (SIGKILL to its whole process group) once 60% of the images are
   written, then the same command again: what the kill left, what the rerun predicted, and whether the union holds
   every image exactly once.

Linux only (it reads /proc). Prints the figures, and writes them to benchmarks/results/sharded.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))

from detective.predict.shards import finished_shards  # noqa: E402


def write_images(folder: Path, count: int) -> list[str]:
    """`count` 64x64 JPEGs (a colour gradient plus noise, the same bytes every time), written once."""
    done = folder / ".complete"
    if not (done.exists() and done.read_text() == str(count)):
        folder.mkdir(parents=True, exist_ok=True)
        ramp = np.linspace(0, 255, 64, dtype=np.float32)
        for i in range(count):
            rng = np.random.default_rng(i)
            base = (ramp[None, :, None] * rng.random(3) + ramp[:, None, None] * rng.random(3)) / 2
            pixels = np.clip(base + rng.normal(0, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
            path = folder / f"{i // 1000:03d}" / f"img{i:06d}.jpg"  # a thousand per folder
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(pixels).save(path, quality=90)
        done.write_text(str(count))
    return sorted(str(p) for p in folder.rglob("*.jpg"))


def demo_checkpoint(path: Path) -> Path:
    """A 64 px two-view net (the demo recipe at 64 px with native crops, as README's figures were measured), random
    weights, saved as train.py saves them."""
    import torch

    from detective.train.config import compose_config
    from detective.train.module import DetectiveModule
    from detective.train.run import module_arguments

    args = module_arguments(compose_config(["experiment=demo", "data.image_size=64", "data.source_view=native"]))
    args.update(freeze_batchnorm=False, cache_features=False)
    module = DetectiveModule(subjects=["cat", "dog", "owl"], **args)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path


def tree(root: int) -> list[int]:
    """`root` and every process below it, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def memory(pid: int) -> tuple[str, int, int] | None:
    """(command line, resident MB, peak resident MB) of a live process."""
    try:
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (OSError, ValueError):
        return None
    if "VmRSS" not in status:  # a zombie, or a process on its way out
        return None
    return cmd, int(status["VmRSS"].split()[0]) // 1024, int(status["VmHWM"].split()[0]) // 1024


def lines(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        try:
            with path.open("rb") as f:
                total += sum(chunk.count(b"\n") for chunk in iter(lambda f=f: f.read(1 << 20), b""))
        except FileNotFoundError:  # renamed or dropped meanwhile
            continue
    return total


def recorded(out: Path) -> int:
    """Records in finished shards."""
    return lines(finished_shards(out))


def written(out: Path) -> int:
    """Records written so far, the unfinished shards' included (Python flushes them every few kB)."""
    return recorded(out) + lines(list(out.glob(".part-*.tmp")))


def sharded_command(images: Path, checkpoint: Path, out: Path, devices: int, accelerator: str) -> list[str]:
    return [
        sys.executable, "predict.py", str(images), "--checkpoint", str(checkpoint), "--out", str(out),
        "--devices", str(devices), "--accelerator", accelerator, "--no-progress",
    ]  # fmt: skip


def sampled(cmd: list[str], progress: Callable[[], int], total: int) -> dict:
    """Run `cmd` to the end, sampling every process's memory twice a second: whole-process throughput, and per
    process its RSS when 10%, 50% and 90% of the images were written, and its peak RSS."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    processes: dict[int, dict] = {}
    while proc.poll() is None:
        done = progress()
        for pid in tree(proc.pid):
            if (m := memory(pid)) is None:
                continue
            seen = processes.setdefault(pid, {"command": m[0][:100], "rss_mb": {}, "peak_mb": 0})
            seen["peak_mb"] = max(seen["peak_mb"], m[2])
            for mark in ("10%", "50%", "90%"):
                if done >= int(mark[:-1]) * total // 100 and mark not in seen["rss_mb"]:
                    seen["rss_mb"][mark] = m[1]
        time.sleep(0.5)
    err = proc.stderr.read().strip()
    wall = time.monotonic() - start
    return {
        "command": " ".join(cmd[1:]),
        "returncode": proc.returncode,
        "wall_s": round(wall, 1),
        "images_per_s": round(total / wall, 1),
        "last_line": err.splitlines()[-1] if err else "",
        "processes": list(processes.values()),
    }


def killed_and_rerun(cmd: list[str], out: Path, files: list[str]) -> dict:
    """Kill the run (SIGKILL to its whole process group) once 60% of the images are written; run it again."""
    proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.DEVNULL, start_new_session=True)
    while written(out) < 0.6 * len(files) and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1)  # the other ranks and the workers die with their group
    left = {
        "records_in_finished_shards": recorded(out),
        "finished_shards": [p.name for p in finished_shards(out)],
        "temporary_files": {p.name: lines([p]) for p in sorted(out.glob(".part-*"))},
    }
    start = time.monotonic()
    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    counts = Counter(json.loads(line)["path"] for shard in finished_shards(out) for line in shard.open())
    return {
        "after_kill": left,
        "rerun_wall_s": round(time.monotonic() - start, 1),
        "rerun_returncode": rerun.returncode,
        "rerun_last_line": rerun.stderr.strip().splitlines()[-1],
        "every_image_exactly_once": counts == Counter(files),
        "temporary_files_after_rerun": sorted(p.name for p in out.glob(".part-*")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/detective-sharded"))
    args = parser.parse_args()
    files = write_images(args.work / "images", args.images)
    checkpoint = args.checkpoint or demo_checkpoint(args.work / "demo-random.ckpt")
    runs = args.work / f"runs-{time.strftime('%Y%m%d-%H%M%S')}"
    images = args.work / "images"
    figures: dict = {"images": len(files), "devices": args.devices, "accelerator": args.accelerator}
    figures["cpus"] = os.cpu_count()

    def run(name: str, measure: Callable[[], dict]) -> None:
        figures[name] = measure()
        print(f"{name}:", json.dumps(figures[name], indent=1), flush=True)

    out = runs / "sharded"
    run("sharded", lambda: sampled(sharded_command(images, checkpoint, out, args.devices, args.accelerator),
                                   lambda: written(out), len(files)))  # fmt: skip
    killed = runs / "killed"
    run("resume", lambda: killed_and_rerun(sharded_command(images, checkpoint, killed, args.devices,
                                                           args.accelerator), killed, files))  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sharded.json").write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
