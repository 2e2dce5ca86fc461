"""The shards of `predict.py --out`, without Lightning: whole shards only, what a rerun skips, what the end reports."""

import json
import pickle
from pathlib import Path

from detective.predict.predictor import Predictor
from detective.predict.results import Failure
from detective.predict.shards import FileBatches, ShardStream, batch_results, plan_shards, recorded, summarise_shards
from tests.helpers import assert_same_records, write_image


def failures(*paths: str) -> list[Failure]:
    return [Failure(p, f"{p}: cannot read image") for p in paths]


def visible(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


def test_a_shard_appears_only_whole_and_an_abandoned_one_not_at_all(tmp_path):
    stream = ShardStream(tmp_path, rank=1, first=7, shard_size=2)
    stream.write(failures("a", "b", "c"))
    assert visible(tmp_path) == [".part-0001-000008.jsonl.tmp", "part-0001-000007.jsonl"]
    assert [p for p, _ in recorded(tmp_path)] == ["a", "b"]  # the unfinished shard is not read
    stream.abandon()  # what an exception in the run does
    assert visible(tmp_path) == ["part-0001-000007.jsonl"]
    stream = ShardStream(tmp_path, rank=1, first=8, shard_size=2)
    stream.write(failures("c"))
    stream.close()  # the end of the run finishes the last, short shard
    assert visible(tmp_path) == ["part-0001-000007.jsonl", "part-0001-000008.jsonl"]
    lines = (tmp_path / "part-0001-000008.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"path": "c", "error": "c: cannot read image"}]


def test_plan_skips_what_finished_shards_hold_and_drops_what_a_dead_run_left(tmp_path):
    stream = ShardStream(tmp_path, rank=0, first=3, shard_size=2)
    stream.write(failures("a", "b", "c"))  # "c" only in the temporary file, as when a run is killed
    (tmp_path / "notes.txt").write_text("not a shard")
    todo = plan_shards(tmp_path, ["a", "b", "c", "d"])
    assert (todo.files, todo.done, todo.first_shard) == (["c", "d"], 2, 4)
    assert visible(tmp_path) == ["notes.txt", "part-0000-000003.jsonl"]
    new = plan_shards(tmp_path / "new" / "out", ["a"])
    assert (new.files, new.done, new.first_shard) == (["a"], 0, 0)
    assert (tmp_path / "new" / "out").is_dir()


def test_summary_counts_failures_missing_and_repeated_inputs_and_names_the_join(tmp_path):
    first = ShardStream(tmp_path, rank=0, shard_size=10)
    first.write(failures("a", "b"))
    first.close()
    ShardStream(tmp_path, rank=1, shard_size=1).write(failures("b", "x"))  # "x" is not an input of this run
    summary = summarise_shards(tmp_path, ["a", "b", "c"], skipped=1)
    assert [f.path for f in summary.failures] == ["a", "b"]
    assert (summary.missing, summary.repeated, summary.shards, summary.complete) == (1, 1, 3, False)
    line = summary.describe()
    assert line.startswith("3 images, 1 of them done by an earlier run; 2 could not be read")
    assert "1 have no record yet: run the same command again" in line and "1 are recorded more than once" in line
    assert line.endswith(f"3 shards in {tmp_path}, one file: cat {tmp_path}/part-*.jsonl > all.jsonl")


def test_file_batches_decode_in_order_and_score_as_the_predictor_does(untrained_checkpoint, tmp_path):
    files = [str(write_image(tmp_path / f"{i}.png", (40 + 9 * i, 30 + 4 * i), seed=i)) for i in range(3)]
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    files.insert(1, str(tmp_path / "bad.jpg"))
    batches = FileBatches(files, 3, untrained_checkpoint)
    assert len(batches) == 2
    predictor = Predictor.from_checkpoint(untrained_checkpoint, "cpu")
    got = [r.as_dict() for i in range(len(batches)) for r in batch_results(predictor, batches[i], top_k=2)]
    want = [r.as_dict() for r in predictor.predict(files, batch_size=4, top_k=2)]
    assert [r["path"] for r in got] == files and "error" in got[1]
    assert len({r["ai_probability"] for r in want if "error" not in r}) == 3  # answers that depend on the image
    assert_same_records(got, want)
    spawned = pickle.loads(pickle.dumps(batches))  # what a spawned DataLoader worker gets: names, not the net
    assert spawned[1].paths == batches[1].paths
