"""Deterministic, stratified train/val/test split.

Each sample's place comes from a hash of (seed, its path relative to the root), not from the
order files were listed or from a random generator, so the same seed and files give the same
split on any machine, and adding a file never moves the others. Several roots are split one by
one and then joined (`merge_splits`): stratified by root as well, and adding a root never moves
another root's files.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from detective.data.labels import SPLIT_NAMES
from detective.data.scan import Sample


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\0{key}".encode()).hexdigest()


def cell_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(n_val, n_test) for a cell of n samples: rounded fractions, but at least one each when n >= 3."""
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    if n >= 3:
        n_val = max(n_val, 1 if val_fraction > 0 else 0)
        n_test = max(n_test, 1 if test_fraction > 0 else 0)
    elif n == 2:
        n_val, n_test = (1 if val_fraction > 0 else 0), 0
    else:
        n_val = n_test = 0
    while n_val + n_test >= n and n > 0:  # keep at least one training sample
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def stratified_split(
    samples: Sequence[Sample], root: Path, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
) -> dict[str, list[Sample]]:
    """Split samples per (subject, source) cell; samples that already carry a split keep it.

    In the explicit `train|val|test` layout a missing `val` or `test` folder is carved out of
    `train` with the same fractions, so every run still has held-out data.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"bad split fractions val={val_fraction}, test={test_fraction}: each in [0, 1), sum below 1")
    out: dict[str, list[Sample]] = {s: [] for s in SPLIT_NAMES}
    given = {s.split for s in samples if s.split}
    carve_val = 0.0 if "val" in given else val_fraction
    carve_test = 0.0 if "test" in given else test_fraction
    cells: dict[tuple[str, bool], list[Sample]] = defaultdict(list)
    for s in samples:
        if s.split in ("val", "test"):
            out[s.split].append(s)
        else:
            cells[(s.subject, s.is_ai)].append(s)
    for cell in sorted(cells):
        members = sorted(cells[cell], key=lambda s: _rank(seed, s.key(root)))
        n_val, n_test = cell_sizes(len(members), carve_val, carve_test)
        out["test"] += members[:n_test]
        out["val"] += members[n_test : n_test + n_val]
        out["train"] += members[n_test + n_val :]
    for split in SPLIT_NAMES:
        out[split].sort(key=lambda s: s.key(root))
    return out


def merge_splits(parts: Sequence[Mapping[str, Sequence[Sample]]]) -> dict[str, list[Sample]]:
    """The splits of several roots joined split by split, in the order of the roots."""
    return {name: [s for part in parts for s in part[name]] for name in SPLIT_NAMES}
