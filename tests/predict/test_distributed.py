"""`predict.py --devices 2 --accelerator cpu --out DIR` as users run it, resuming what a killed run left: two
processes (gloo), every file once, the single-process path's records, failures recorded.

One run covers it all: each process imports Lightning, which takes longer than predicting these images."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from detective.predict.predictor import Predictor
from detective.predict.shards import ShardStream, finished_shards
from tests.helpers import REPO, assert_same_records, write_image

pytestmark = pytest.mark.slow  # two fresh processes importing Lightning: 20-40 s on a busy 2-core machine

CORRUPT = "sub1/corrupt.jpg"  # a JPEG cut short, as a failed copy leaves it
EARLIER = "part-0001-000004.jsonl"  # the one shard a killed run finished
UNFINISHED = ".part-0000-000005.jsonl.tmp"  # and the one it was writing


def read(shards: list[Path]) -> list[dict]:
    return [json.loads(line) for shard in shards for line in shard.read_text().splitlines()]


def by_path(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: r["path"])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[str]:
    """Nine images of as many sizes (each judged on its own grid of crops) and a corrupt one, sorted."""
    root = tmp_path_factory.mktemp("big")
    for i in range(9):
        write_image(root / f"sub{i % 2}" / f"img{i}.png", (40 + 11 * i, 30 + 6 * i), seed=i)
    jpeg = write_image(root / CORRUPT, (64, 48)).read_bytes()
    (root / CORRUPT).write_bytes(jpeg[: len(jpeg) // 3])
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def single(files, untrained_checkpoint) -> list[dict]:
    """The single-process path's records, in the files' order."""
    return [r.as_dict() for r in Predictor.from_checkpoint(untrained_checkpoint, "cpu").predict(files)]


@pytest.fixture(scope="module")
def run(files, single, untrained_checkpoint, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path, bytes]:
    """The output folder as a killed run left it, then the same command again: (the rerun, the folder, the bytes of
    the finished shard before it)."""
    out = tmp_path_factory.mktemp("run") / "preds"
    out.mkdir()
    earlier = ShardStream(out, rank=1, first=4, shard_size=3)
    earlier.write(Predictor.from_checkpoint(untrained_checkpoint, "cpu").predict(files[:3]))
    (out / UNFINISHED).write_text(json.dumps(single[3]) + '\n{"path": "half')
    before = (out / EARLIER).read_bytes()
    cmd = [sys.executable, "predict.py", str(Path(files[0]).parents[1]), "--checkpoint", str(untrained_checkpoint)]
    cmd += ["--out", str(out), "--devices", "2", "--accelerator", "cpu"]
    cmd += ["--shard-size", "2", "--batch-size", "3", "--workers", "1"]  # several shards and batches per process
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300), out, before


def test_every_file_exactly_once_across_both_processes_and_the_printed_join_command(files, run, tmp_path):
    done, out, _ = run
    assert done.returncode == 1, done.stderr[-3000:]  # the corrupt file: some inputs failed
    assert Counter(r["path"] for r in read(finished_shards(out))) == Counter(files)
    shards = [p.name for p in finished_shards(out)]
    assert {name[: len("part-0000")] for name in shards} == {"part-0000", "part-0001"}  # both processes wrote
    assert sorted(p.name for p in out.iterdir()) == shards  # no temporary file left, the dead run's neither
    join = re.search(r"one file: (cat .*)$", done.stderr.strip().splitlines()[-1]).group(1)
    subprocess.run(join, shell=True, cwd=tmp_path, check=True)  # the command the run prints, as printed
    assert by_path(read([tmp_path / "all.jsonl"])) == by_path(read(finished_shards(out)))


def test_the_rerun_predicts_only_what_the_killed_run_left(files, run):
    done, out, before = run
    assert (out / EARLIER).read_bytes() == before  # the finished shard is kept as it was
    new = [p for p in finished_shards(out) if p.name != EARLIER]
    assert all(int(p.stem.split("-")[2]) >= 5 for p in new)  # numbered after it: nothing overwritten
    assert sorted(r["path"] for r in read(new)) == files[3:]  # the unfinished shard's image included
    assert "predict.py: 10 images, 3 of them done by an earlier run; 1 could not be read" in done.stderr


def test_records_and_probabilities_are_the_single_process_paths(files, single, run):
    done, out, _ = run
    assert len({r["ai_probability"] for r in single if "error" not in r}) == 9  # answers that depend on the image
    assert_same_records(by_path(read(finished_shards(out))), single, tolerance=1e-5)  # the corrupt one's too
    corrupt = str(Path(files[0]).parents[1] / CORRUPT)
    assert f"predict.py: error: {corrupt}: cannot read image (image file is truncated" in done.stderr
