"""Faster forms of the model for the parts that do not learn: memory layout and a frozen, fused backbone.

Measured on a 2-core AVX-512 CPU, MobileNetV2 at batch 32, 224 px, float32 (benchmarks/bench.py): eager NCHW
~38 img/s, channels_last ~65 img/s, the TorchScript form below ~175 img/s (BatchNorm folded into the convolutions,
conv + BatchNorm + ReLU6 fused by oneDNN). `torch.compile` (inductor, freezing) reached ~98 img/s there after a
compile of tens of seconds, so the frozen backbone uses TorchScript. TorchScript is deprecated in favour of
torch.compile; if a future torch drops it, `trace_frozen` falls back to the eager module with a warning.
"""

from __future__ import annotations

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


def trace_frozen(trunk: nn.Module, example: Tensor) -> Callable[[Tensor], Tensor]:
    """An inference-only copy of `trunk` (which must be in eval mode and not learn): traced, frozen (weights as
    constants, BatchNorm folded) and, on CPU, fused by oneDNN Graph. Its outputs equal the module's to float
    rounding; the copy does not follow later weight changes, so rebuild it after the trunk trains again."""
    if trunk.training:
        raise ValueError("trace_frozen needs the trunk in eval mode (BatchNorm with running statistics)")
    if example.device.type == "cpu":
        torch.jit.enable_onednn_fusion(True)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice: a known choice here
            return torch.jit.freeze(torch.jit.trace(trunk, example, check_trace=False))
    except (AttributeError, RuntimeError) as err:  # a torch without TorchScript, or a trunk it cannot trace
        warnings.warn(f"frozen backbone runs eagerly: TorchScript tracing failed ({err})", stacklevel=2)
        return trunk
