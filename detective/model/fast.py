"""Faster forms of the model for the parts that do not learn: memory layout, a frozen, fused backbone, and
BatchNorm's frozen statistics folded into the convolutions of a backbone that learns.

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
from torch import Tensor, fx, nn
from torch.nn import functional as F

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


def fold_batchnorm(trunk: nn.Module) -> nn.Module:
    """A form of `trunk` for learning with BatchNorm's running statistics kept (BatchNorm in eval mode): each
    convolution + BatchNorm pair runs as one convolution whose weights and bias are folded from the live
    parameters on every call, so gradients still reach both layers' weights and the result equals the eager
    trunk's in eval mode, to float rounding. It spares BatchNorm's own pass over every activation, forward and
    backward, and autograd's record of it (see README "Speed").

    The form shares the trunk's modules and holds no parameters of its own: it never goes stale, and state dicts
    and optimisers see only the trunk."""
    graph_module = fx.symbolic_trace(trunk)
    modules = dict(graph_module.named_modules())
    for node in list(graph_module.graph.nodes):
        conv = node.args[0] if node.op == "call_module" and node.args else None
        if not (
            isinstance(modules.get(node.target), nn.BatchNorm2d)
            and isinstance(conv, fx.Node)
            and conv.op == "call_module"
            and isinstance(modules.get(conv.target), nn.Conv2d)
            and modules[conv.target].padding_mode == "zeros"
            and len(conv.users) == 1
        ):
            continue
        name = f"{conv.target}_with_{node.target}".replace(".", "_")
        graph_module.add_submodule(name, _ConvBatchNorm(modules[conv.target], modules[node.target]))
        with graph_module.graph.inserting_after(node):
            folded = graph_module.graph.call_module(name, conv.args)
        node.replace_all_uses_with(folded)
        graph_module.graph.erase_node(node)
        graph_module.graph.erase_node(conv)
    graph_module.recompile()
    return graph_module


class _ConvBatchNorm(nn.Module):
    """conv then BatchNorm (running statistics) as one convolution: w * s, beta + (b - mean) * s with
    s = gamma / sqrt(var + eps)."""

    def __init__(self, conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv, self.norm = conv, norm

    def forward(self, x: Tensor) -> Tensor:
        conv, norm = self.conv, self.norm
        scale = torch.rsqrt(norm.running_var + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight
        bias = -norm.running_mean * scale if conv.bias is None else (conv.bias - norm.running_mean) * scale
        if norm.bias is not None:
            bias = bias + norm.bias
        weight = conv.weight * scale.view(-1, 1, 1, 1)
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
