import random
from collections import Counter
from pathlib import Path

import pytest

from detective.data.labels import SPLIT_NAMES
from detective.data.scan import Sample
from detective.data.split import cell_sizes, merge_splits, stratified_split

ROOT = Path("/data")


def samples(cells: dict[tuple[str, bool], int]) -> list[Sample]:
    return [
        Sample(ROOT / subject / f"{subject}_{i}{'_ai' if ai else ''}.jpg", subject, ai)
        for (subject, ai), n in cells.items()
        for i in range(n)
    ]


def keys(split):
    return {name: [s.key(ROOT) for s in part] for name, part in split.items()}


def test_same_seed_same_split_whatever_the_listing_order():
    data = samples({("cat", False): 40, ("cat", True): 30, ("dog", False): 25, ("dog", True): 7})
    shuffled = data[:]
    random.Random(1).shuffle(shuffled)
    assert keys(stratified_split(data, ROOT, seed=3)) == keys(stratified_split(shuffled, ROOT, seed=3))
    assert keys(stratified_split(data, ROOT, seed=3)) != keys(stratified_split(data, ROOT, seed=4))


def test_split_is_a_partition_with_the_requested_fractions():
    data = samples({("cat", False): 100, ("cat", True): 100})
    split = stratified_split(data, ROOT, 0.2, 0.1)
    assert sorted(k for part in keys(split).values() for k in part) == sorted(s.key(ROOT) for s in data)
    assert {name: len(part) for name, part in split.items()} == {"train": 140, "val": 40, "test": 20}


def test_every_cell_appears_in_every_split_where_counts_allow():
    data = samples({("cat", False): 50, ("cat", True): 3, ("dog", False): 2, ("dog", True): 1})
    split = stratified_split(data, ROOT, 0.1, 0.1)
    cells = {name: Counter((s.subject, s.is_ai) for s in part) for name, part in split.items()}
    for name in SPLIT_NAMES:
        assert cells[name][("cat", False)] >= 1 and cells[name][("cat", True)] == 1
    assert cells["train"][("dog", False)] == 1 and cells["val"][("dog", False)] == 1
    assert cells["train"][("dog", True)] == 1


def test_adding_a_file_moves_no_other_file():
    data = samples({("cat", False): 60})
    before = stratified_split(data, ROOT, 0.25, 0.25)
    after = stratified_split([*data, Sample(ROOT / "cat" / "new.jpg", "cat", False)], ROOT, 0.25, 0.25)
    moved = [s for s in data if (s in before["train"]) != (s in after["train"])]
    assert len(moved) <= 1


def test_explicit_split_is_kept_and_missing_val_is_carved_from_train():
    data = [
        *[Sample(ROOT / f"train/cat/{i}.jpg", "cat", False, "train") for i in range(20)],
        *[Sample(ROOT / f"test/cat/{i}.jpg", "cat", False, "test") for i in range(5)],
    ]
    split = stratified_split(data, ROOT, 0.1, 0.3)
    assert len(split["test"]) == 5  # the test folder as given, nothing carved
    assert len(split["val"]) == 2 and len(split["train"]) == 18


@pytest.mark.parametrize(("n", "expected"), [(0, (0, 0)), (1, (0, 0)), (2, (1, 0)), (3, (1, 1)), (10, (1, 1))])
def test_cell_sizes(n, expected):
    assert cell_sizes(n, 0.1, 0.1) == expected


def test_bad_fractions_are_refused():
    with pytest.raises(ValueError, match="bad split fractions"):
        stratified_split([], ROOT, 0.6, 0.5)


def test_roots_are_split_one_by_one_and_joined_in_their_order():
    other = Path("/more")
    a = stratified_split(samples({("cat", False): 10, ("cat", True): 10}), ROOT)
    b = stratified_split([Sample(other / "real" / f"{i}.jpg", "", False) for i in range(10)], other)
    assert merge_splits([a, b]) == {name: a[name] + b[name] for name in SPLIT_NAMES}
