import subprocess
import sys
import textwrap

import pytest

from detective import memory
from detective.memory import reusing_freed_memory

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
