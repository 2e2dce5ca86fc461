"""Faster forms of the model for the parts that do not learn: memory layout and a frozen, fused backbone.

Measured on a 2-core AVX-512 CPU, MobileNetV2 at batch 32, 224 px, float32 (benchmarks/bench.py): eager NCHW ~38
img/s, channels_last ~65 img/s, the TorchScript form below ~175 img/s (BatchNorm folded into the convolutions, conv
+ BatchNorm + ReLU6 fused by oneDNN). `torch.compile` (inductor, freezing) reached ~98 img/s there after a compile
of tens of seconds, so the frozen backbone uses TorchScript. (All with glibc's default malloc; with
`detective.memory.reusing_freed_memory`, as train.py runs, the trace reaches ~230 img/s, ~400 as a bf16 trace.)
TorchScript is deprecated in favour of torch.compile; if a future torch drops it, `trace_frozen` falls back to the
eager module with a warning.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

# model.frozen_backbone: how a frozen backbone runs; "eager" is the module as it is.
FROZEN_FORMS = ("jit", "eager")


def check_frozen_form(form: str) -> str:
    if form not in FROZEN_FORMS:
        raise ValueError(f"unknown model.frozen_backbone {form!r}: use one of {', '.join(FROZEN_FORMS)}")
    return form


def memory_format(channels_last: bool) -> torch.memory_format:
    """channels_last (NHWC) suits oneDNN's depthwise convolutions on CPU and tensor cores on GPU."""
    return torch.channels_last if channels_last else torch.contiguous_format


def trace_frozen(trunk: nn.Module, example: Tensor, dtype: torch.dtype | None = None) -> Callable[[Tensor], Tensor]:
    """An inference-only copy of `trunk` (which must be in eval mode and not learn): traced, frozen (weights as
    constants, BatchNorm folded) and, on CPU, fused by oneDNN Graph. Its outputs equal the module's to float
    rounding; the copy does not follow later weight changes, so rebuild it after the trunk trains again.

    With a `dtype` other than the example's (bf16 under mixed precision), the copy holds its weights in that dtype
    and casts its input to it: autocast would otherwise convert every weight on every call, and could not fuse."""
    if trunk.training:
        raise ValueError("trace_frozen needs the trunk in eval mode (BatchNorm with running statistics)")
    dtype = dtype or example.dtype
    if dtype != example.dtype:
        trunk, example = copy.deepcopy(trunk).to(dtype), example.to(dtype)
    if example.device.type == "cpu":
        torch.jit.enable_onednn_fusion(True)
    try:
        with warnings.catch_warnings(), torch.no_grad(), torch.autocast(example.device.type, enabled=False):
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice: a known choice here
            traced = torch.jit.freeze(torch.jit.trace(trunk, example, check_trace=False))
    except (AttributeError, RuntimeError) as err:  # a torch without TorchScript, or a trunk it cannot trace
        warnings.warn(f"frozen backbone runs eagerly: TorchScript tracing failed ({err})", stacklevel=2)
        traced = trunk
    return _casting_input(traced, dtype)


def _casting_input(fn: Callable[[Tensor], Tensor], dtype: torch.dtype) -> Callable[[Tensor], Tensor]:
    """`fn` fed `dtype`, with autocast off: the weights are already in the precision it would choose."""

    def run(x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return fn(x.to(dtype))

    return run
