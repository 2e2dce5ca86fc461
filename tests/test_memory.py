import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detective import memory
from detective.memory import reusing_freed_memory, trim_freed_memory
from tests.helpers import REPO, FakeGlibc

# Page faults of allocating and filling a 64 MB tensor (larger than malloc ever keeps by default) and freeing it, as
# a training loop does with a batch's activations: in steady state (after the heap has grown to fit) before the
# setting and inside the block; and the resident memory (MB) at the end of the block and after it. Run in a child so
# this test process keeps its own settings.
PROBE = textwrap.dedent(
    """
    import resource, torch
    from detective.memory import reusing_freed_memory

    def faults(warmup=12, counted=4):
        for i in range(warmup + counted):
            if i == warmup:
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            torch.ones(16 * 2**20)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    def resident_mb():
        return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() // 2**20

    default = faults()
    with reusing_freed_memory() as on:
        kept = faults()
        inside = resident_mb()
    print(on, default, kept, inside, resident_mb())
    """
)


@pytest.mark.skipif(memory._glibc() is None, reason="the setting exists only with glibc (Linux)")
def test_a_batch_sized_block_is_reused_instead_of_faulted_in_again_then_given_back():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    on, default, kept, inside, after = out[0] == "True", *map(int, out[1:])
    assert on
    assert default > 0 and kept * 10 < default  # every allocation faults its pages in, unless the heap keeps them
    assert after <= inside - 64  # the kept memory is given back when the block ends


def test_disabled_or_without_glibc_nothing_changes(monkeypatch):
    with reusing_freed_memory(enabled=False) as on:
        assert on is False
    monkeypatch.setattr(memory, "_glibc", lambda: None)
    with reusing_freed_memory() as on:
        assert on is False
    assert memory.reuse_freed_memory() is False


# Blocks of many sizes (0.2-8 MB, as a batch's activations are with photos of many sizes) allocated and freed step
# after step, with one small block kept alive between them each step (as a cached feature row is): glibc's heap
# is left full of free holes that only trimming gives back. Resident MB before and after trimming, and whether
# trimming does anything inside `reusing_freed_memory`.
FRAGMENTS = textwrap.dedent(
    """
    import ctypes, random, resource
    from detective.memory import reusing_freed_memory, trim_freed_memory

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]

    def resident_mb():
        return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() // 2**20

    random.seed(0)
    kept = []
    for step in range(100):
        blocks = [libc.malloc(random.randint(200_000, 8_000_000)) for _ in range(10)]
        for block in blocks:
            libc.memset(block, 1, 200_000)
        kept.append(libc.malloc(2000))
        for block in blocks:
            libc.free(block)
    before = resident_mb()
    trimmed = trim_freed_memory()
    after = resident_mb()
    with reusing_freed_memory():
        print(trimmed, before, after, trim_freed_memory())
    """
)


@pytest.mark.skipif(memory._glibc() is None, reason="malloc_trim exists only in glibc (Linux)")
def test_trimming_gives_the_holes_of_a_fragmented_heap_back_except_while_reuse_keeps_them():
    out = subprocess.run([sys.executable, "-c", FRAGMENTS], capture_output=True, text=True, check=True).stdout.split()
    trimmed, before, after, while_reusing = out[0] == "True", int(out[1]), int(out[2]), out[3] == "True"
    assert trimmed and after <= before - 10
    assert not while_reusing


# Inside a block with a limit, as prediction runs: in steady state (glibc's heap then holds several 64 MB blocks) a
# freed 64 MB batch stays in the heap under a limit above that, so the next batch of that size faults almost no page
# in; under a 16 MB limit trimming hands it back and it faults again.
LIMITED = textwrap.dedent(
    """
    import resource, torch
    from detective.memory import free_heap_bytes, reusing_freed_memory, trim_freed_memory

    def faults_of_a_batch():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(16 * 2**20)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    for limit in (2**40, 16 * 2**20):
        with reusing_freed_memory(limit=limit):
            for _ in range(16):  # until the heap has grown to fit
                faults_of_a_batch()
            free, trimmed = free_heap_bytes() // 2**20, trim_freed_memory()
            print(free, trimmed, faults_of_a_batch())
    """
)


@pytest.mark.skipif(memory.free_heap_bytes() is None, reason="needs glibc 2.33 or later (mallinfo2)")
def test_within_a_limit_freed_batches_are_kept_and_beyond_it_given_back():
    out = subprocess.run([sys.executable, "-c", LIMITED], capture_output=True, text=True, check=True).stdout.split()
    free_under, trimmed_under, faults_kept, free_over, trimmed_over, faults_again = out
    assert int(free_under) >= 64 and int(free_over) >= 64
    assert trimmed_under == "False" and trimmed_over == "True"
    assert int(faults_kept) * 10 < int(faults_again)


@pytest.mark.parametrize(
    ("free", "limit", "trims"),
    [
        (10 * 2**20, 100 * 2**20, False),  # kept for the next batch
        (200 * 2**20, 100 * 2**20, True),  # beyond the limit: handed back
        (None, 100 * 2**20, True),  # a glibc that cannot tell (before 2.33): handed back, as outside the block
        (None, float("inf"), False),  # no limit (train.py's reuse_freed_memory): always kept
    ],
)
def test_trimming_inside_a_block_follows_its_limit(monkeypatch, free, limit, trims):
    libc = FakeGlibc(free)
    monkeypatch.setattr(memory, "_glibc", lambda: libc)
    with reusing_freed_memory(limit=limit):
        assert trim_freed_memory() is trims
        with reusing_freed_memory(limit=0):  # a block inside another changes nothing, on entry or exit
            assert trim_freed_memory() is trims
        assert trim_freed_memory() is trims
    assert libc.trims == 3 * trims + 1  # and the block gives everything back when it ends
    assert trim_freed_memory() is True  # outside any block: always


def test_without_glibc_trimming_does_nothing(monkeypatch):
    monkeypatch.setattr(memory, "_glibc", lambda: None)
    assert memory.trim_freed_memory() is False


def write_photo_folder(root: Path, count: int) -> Path:
    """A source-only folder of smooth JPEGs in many sizes, two of them 12 MP: a phone's and a downloads folder's."""
    rng = np.random.default_rng(0)
    sizes = [(4000, 3000), (3000, 4000)] + [tuple(rng.integers(600, 3200, 2)) for _ in range(count - 2)]
    for i, (width, height) in enumerate(sizes):
        coarse = rng.integers(0, 256, (height // 32, width // 32, 3), dtype=np.uint8)
        folder = root / ("ai" if i % 2 else "real")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(coarse).resize((int(width), int(height)), Image.BILINEAR).save(folder / f"p{i:02d}.jpg")
    return root


def peak_mb(*args: str) -> int:
    """Peak resident memory (MB) of the largest process that `python *args` starts: itself or a loader worker."""
    measure = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)"
    )
    done = subprocess.run([sys.executable, "-c", measure, sys.executable, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout)


# The largest process of the default recipe on these photos: the interpreter with torch and Lightning (~0.5 GB),
# the batch's decoded crops and one chunk of crops' activations; nothing that grows with image size or count. (All
# of a batch's crops at once, as before, passed 2.8 GB.)
TRAIN_PEAK_MB = 2500


@pytest.mark.slow
def test_training_memory_stays_bounded_on_photos_of_many_sizes(tmp_path):
    photos = write_photo_folder(tmp_path / "photos", 12)
    peak = peak_mb(
        str(REPO / "train.py"),
        f"data.root={photos}",
        "model.pretrained=false",
        "trainer.max_epochs=1",
        "test=false",
        "~callbacks.progress_bar",
        f"paths.output_dir={tmp_path / 'run'}",
    )
    print(f"peak MB: {peak}")
    assert peak < TRAIN_PEAK_MB
