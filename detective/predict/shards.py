"""The shards of `predict.py --out DIR`, without Lightning: which files are left, batches of them decoded for the
net, records streamed into shards that are never half-written, and what the shards hold at the end.

A shard is `DIR/part-<rank>-<n>.jsonl`, one `predict.py --json` record per line. It is written under a hidden
temporary name, flushed, fsynced and renamed, so a shard on disk is always whole, and a run that dies loses only
the shards it had not finished; a rerun skips every path a finished shard records. No Lightning here: the DataLoader
workers that decode import this module, and need neither Lightning's import time nor its memory.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from torch.utils.data import Dataset

from detective.data.dataset import collate_views
from detective.files import fsync_folder
from detective.predict.predictor import CollatedViews, Predictor
from detective.predict.results import Failure, Result

SHARD_GLOB = "part-*.jsonl"
SHARD_NAME = re.compile(r"part-(\d+)-(\d+)\.jsonl")
TEMP_GLOB = ".part-*.tmp"


def shard_name(rank: int, number: int) -> str:
    return f"part-{rank:04d}-{number:06d}.jsonl"


def finished_shards(out: Path) -> list[Path]:
    """The shards runs have finished (renamed into place), in name order."""
    return sorted(p for p in out.glob(SHARD_GLOB) if SHARD_NAME.fullmatch(p.name))


def recorded(out: Path) -> Iterator[tuple[str, str | None]]:
    """(path, error or None) of every record in the finished shards under `out`."""
    for shard in finished_shards(out):
        with shard.open(encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                yield record["path"], record.get("error")


@dataclass(frozen=True)
class ShardPlan:
    """What a run has left to do: the files no finished shard records, and the number its shards start from."""

    files: list[str]
    done: int
    first_shard: int


def plan_shards(out: Path, files: Sequence[str]) -> ShardPlan:
    """Create `out`, drop the temporary files of a run that died, and skip the files its shards already hold.

    Every process plans for itself, before Lightning connects them; no process writes before all are connected, so
    all see the same shards and make the same plan."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(TEMP_GLOB):
        stale.unlink(missing_ok=True)
    done = {path for path, _ in recorded(out)}
    todo = [f for f in files if f not in done]
    numbers = [int(SHARD_NAME.fullmatch(p.name).group(2)) for p in finished_shards(out)]  # type: ignore[union-attr]
    return ShardPlan(todo, len(files) - len(todo), max(numbers, default=-1) + 1)


class LoadedBatch(NamedTuple):
    """A batch as a loader worker makes it: the paths, each one's decoding error (None where it decoded), and the
    views of those that decoded, batched (None when none did)."""

    paths: list[str]
    errors: list[str | None]
    views: CollatedViews | None


class FileBatches(Dataset):
    """Consecutive batches of `files`, each decoded and collated when asked for (in a DataLoader worker).

    Decoding goes through a `Predictor` of the checkpoint built in the process that decodes: where workers are not
    forked (macOS, Windows, Python 3.14's forkserver) the dataset is pickled, and file names and a path pickle
    cheaply, where the net's views and weights would not."""

    def __init__(self, files: Sequence[str], batch_size: int, checkpoint: Path) -> None:
        self.files, self.batch_size, self.checkpoint = files, batch_size, checkpoint
        self._predictor: Predictor | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_predictor": None}

    def __len__(self) -> int:
        return -(-len(self.files) // self.batch_size)

    def __getitem__(self, index: int) -> LoadedBatch:
        if self._predictor is None:
            self._predictor = Predictor.from_checkpoint(self.checkpoint, "cpu")
        paths = list(self.files[index * self.batch_size : (index + 1) * self.batch_size])
        loaded = [self._predictor.load_or_fail(p) for p in paths]
        good = [views for views in loaded if not isinstance(views, Failure)]
        errors = [item.error if isinstance(item, Failure) else None for item in loaded]
        return LoadedBatch(paths, errors, collate_views(*zip(*good, strict=True)) if good else None)


def batch_results(predictor: Predictor, batch: LoadedBatch, top_k: int) -> list[Result]:
    """One result per path of `batch`, in order: a `Prediction`, or the `Failure` its decoding gave."""
    scores = iter(predictor.predict_batch(batch.views, top_k) if batch.views else ())
    return [
        Failure(path, error) if error is not None else predictor.result(path, *next(scores))
        for path, error in zip(batch.paths, batch.errors, strict=True)
    ]


class ShardStream:
    """One process's records, streamed into its shards `part-<rank>-<n>.jsonl` from `n = first` on, a new one
    every `shard_size` records; `close` finishes the last."""

    def __init__(self, out: Path, rank: int, first: int = 0, shard_size: int = 5000) -> None:
        self.out, self.rank, self.number, self.shard_size = out, rank, first, shard_size
        self._file: IO[str] | None = None
        self._written = 0

    def write(self, results: Sequence[Result]) -> None:
        for result in results:
            if self._file is None:
                self._file = self._temporary().open("w", encoding="utf-8")
            self._file.write(json.dumps(result.as_dict()) + "\n")
            self._written += 1
            if self._written == self.shard_size:
                self._finish()

    def close(self) -> None:
        if self._file is not None:
            self._finish()

    def abandon(self) -> None:
        """After an error: drop the unfinished shard (its files are predicted again by the next run)."""
        if self._file is not None:
            self._file.close()
            self._temporary().unlink(missing_ok=True)
            self._file = None

    def _temporary(self) -> Path:
        return self.out / f".{shard_name(self.rank, self.number)}.tmp"

    def _finish(self) -> None:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._temporary(), self.out / shard_name(self.rank, self.number))
        fsync_folder(self.out)
        self._file, self._written, self.number = None, 0, self.number + 1


@dataclass
class Summary:
    """What the shards under `out` say about the inputs of a run, read back from disk after it."""

    out: Path
    inputs: int
    skipped: int  # recorded by an earlier run
    shards: int
    failures: list[Failure] = field(default_factory=list)
    missing: int = 0  # inputs no shard records
    repeated: int = 0  # inputs recorded more than once

    @property
    def complete(self) -> bool:
        return not (self.failures or self.missing or self.repeated)

    def describe(self) -> str:
        """One line: what the shards hold, what went wrong, and the command that joins them."""
        parts = [f"{self.inputs} images, {self.skipped} of them done by an earlier run"]
        if self.failures:
            parts.append(f'{len(self.failures)} could not be read (records with an "error")')
        if self.missing:
            parts.append(f"{self.missing} have no record yet: run the same command again")
        if self.repeated:
            parts.append(f"{self.repeated} are recorded more than once (two runs writing into {self.out}?)")
        joined = shlex.quote(str(self.out)) + "/part-*.jsonl"
        return f"{'; '.join(parts)}; {self.shards} shards in {self.out}, one file: cat {joined} > all.jsonl"


def summarise_shards(out: Path, files: Sequence[str], skipped: int) -> Summary:
    wanted = set(files)
    counts: Counter[str] = Counter()
    summary = Summary(out, len(files), skipped, len(finished_shards(out)))
    for path, error in recorded(out):
        if path in wanted:
            counts[path] += 1
            if error is not None and counts[path] == 1:
                summary.failures.append(Failure(path, error))
    summary.missing = len(wanted) - len(counts)
    summary.repeated = sum(1 for n in counts.values() if n > 1)
    return summary
