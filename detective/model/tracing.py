"""A frozen backbone traced and fused by oneDNN Graph, behind a guard: the traced form ("jit") is checked against
the folded form when built, and any error at a later call switches to the folded form for the rest of the run.

Why the guard: oneDNN builds its fused kernels at the first calls of each input shape, and on some CPUs that fails
for small maps.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from detective.model.folding import fold_batchnorm


@contextmanager
def onednn_fusion(enabled: bool) -> Iterator[None]:
    """oneDNN Graph fusion for the block only: the switch is process-wide, and other code must not inherit it."""
    before = torch.jit.onednn_fusion_enabled()
    torch.jit.enable_onednn_fusion(enabled)
    try:
        yield
    finally:
        torch.jit.enable_onednn_fusion(before)


def trace_frozen(trunk: nn.Module, example: Tensor, dtype: torch.dtype | None = None) -> Callable[[Tensor], Tensor]:
    """An inference-only form of `trunk` (which must be in eval mode and not learn): traced, frozen (weights as
    constants, BatchNorm folded) and, on CPU, fused by oneDNN Graph, behind `GuardedTrace`; where tracing fails, the
    folded form. Its outputs equal the module's to float rounding; it does not follow later weight changes, so
    rebuild it after the trunk trains again.

    With a `dtype` other than the example's (bf16 under mixed precision), the form holds its weights in that dtype
    and casts its input to it: autocast would otherwise convert every weight on every call, and could not fuse."""
    if trunk.training:
        raise ValueError("trace_frozen needs the trunk in eval mode (BatchNorm with running statistics)")
    dtype = dtype or example.dtype
    if dtype != example.dtype:
        trunk, example = copy.deepcopy(trunk).to(dtype), example.to(dtype)
    fallback = _casting_input(fold_batchnorm(trunk), dtype)
    fuse = example.device.type == "cpu"
    try:
        with (
            warnings.catch_warnings(),
            torch.no_grad(),
            torch.autocast(example.device.type, enabled=False),
            onednn_fusion(fuse),
        ):
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice: a known choice here
            traced = torch.jit.freeze(torch.jit.trace(trunk, example, check_trace=False))
    except (AttributeError, RuntimeError) as err:  # a torch without TorchScript, or a trunk it cannot trace
        warnings.warn(f"frozen backbone runs folded: TorchScript tracing failed ({err})", stacklevel=2)
        return fallback
    guarded = GuardedTrace(_casting_input(traced, dtype), fallback, fuse)
    return guarded if guarded.agrees_on(example) else fallback


class GuardedTrace:
    """A traced form that can never crash a run: any error it raises at a call (oneDNN builds fused kernels per
    input shape at the first calls, and on some CPUs cannot for small maps) switches it, with one warning, to the
    fallback for the rest of the run; that call's answer comes from the fallback."""

    CHECK_CALLS = 3  # the profiling executor optimises and fuses on the second call of a shape: check past it

    def __init__(self, traced: Callable[[Tensor], Tensor], fallback: Callable[[Tensor], Tensor], fuse: bool) -> None:
        self.traced, self.fallback, self.fuse = traced, fallback, fuse
        self.failed = False

    def __call__(self, x: Tensor) -> Tensor:
        if not self.failed:
            try:
                with onednn_fusion(self.fuse):
                    return self.traced(x)
            except RuntimeError as err:
                self._fail(f"failed at a call ({_first_line(err)})")
        return self.fallback(x)

    def agrees_on(self, example: Tensor) -> bool:
        """Whether the traced form gives the fallback's answer on `example` and on odd batch sizes of it, over
        several calls; if not, it has failed (with one warning)."""
        batches = {len(example), 1, max(len(example) - 1, 1)}
        for size in sorted(batches, reverse=True):
            x = example[:size]
            with torch.no_grad():
                want = self.fallback(x).float()
            for _ in range(self.CHECK_CALLS):
                with torch.no_grad():
                    got = self(x)
                if self.failed:
                    return False
                if not torch.allclose(got.float(), want, rtol=0.05, atol=0.05 * float(want.abs().max())):
                    self._fail("disagreed with the folded form on a check")
                    return False
        return True

    def _fail(self, why: str) -> None:
        self.failed = True
        warnings.warn(f"frozen backbone runs folded for the rest of the run: its traced form {why}", stacklevel=3)


def _first_line(err: Exception) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(err).__name__


def _casting_input(fn: Callable[[Tensor], Tensor], dtype: torch.dtype) -> Callable[[Tensor], Tensor]:
    """`fn` fed `dtype`, with autocast off: the weights are already in the precision it would choose."""

    def run(x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return fn(x.to(dtype))

    return run
