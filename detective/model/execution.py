"""Faster forms of the model for the parts that do not learn: memory layout, BatchNorm's frozen statistics folded
into the convolutions, and an opt-in traced, oneDNN-fused backbone guarded by a fallback.

A frozen backbone runs folded by default: plain PyTorch operators, so it runs on any CPU. The traced form ("jit")
is faster where oneDNN Graph works, but oneDNN builds its fused kernels at the first calls of each input shape, and
on some CPUs that fails for small maps; so it is checked against the folded form when built and any error at a
later call falls back to the folded form for the rest of the run (README "Speed" has the figures). `FastExecution`
holds this execution state for `DetectiveNet`, so that net.py says only what the network is.
"""

from __future__ import annotations

import copy
import hashlib
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

import torch
from torch import Tensor, fx, nn
from torch.nn import functional as F

# model.frozen_backbone: how a frozen backbone runs. folded: BatchNorm folded into the convolutions; jit: traced and
# oneDNN-fused, checked and falling back to folded; eager: the module as it is.
FROZEN_FORMS = ("folded", "jit", "eager")


def check_frozen_form(form: str) -> str:
    if form not in FROZEN_FORMS:
        raise ValueError(f"unknown model.frozen_backbone {form!r}: use one of {', '.join(FROZEN_FORMS)}")
    return form


def memory_format(channels_last: bool) -> torch.memory_format:
    """channels_last (NHWC) suits oneDNN's depthwise convolutions on CPU and tensor cores on GPU."""
    return torch.channels_last if channels_last else torch.contiguous_format


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


class FastExecution:
    """How a net's backbone runs, apart from what the net is (mixed into `DetectiveNet`, which provides
    `backbone`, `normalize`, `backbone_frozen` and `statistics_frozen`): the memory layout of weights and inputs,
    the folded or traced form of a frozen backbone, BatchNorm's frozen statistics folded into the convolutions, and the
    features a frozen backbone remembers per image. None of it is saved: traces and features are rebuilt on use."""

    backbone: nn.Module
    backbone_frozen: bool
    statistics_frozen: bool

    def _init_execution(self) -> None:
        self.memory_format = torch.contiguous_format
        self.frozen_form = "eager"
        self._frozen_trunks: dict[tuple[Any, ...], Callable[[Tensor], Tensor]] = {}
        self.cache_features = False
        self._feature_cache: dict[bytes, Tensor] = {}  # image digest -> features, while the backbone is frozen
        self.register_load_state_dict_post_hook(_forget_frozen_state)  # loaded weights make traces and features stale

    def set_speed(
        self,
        *,
        channels_last: bool = True,
        frozen_backbone: str = "folded",
        compile: bool = False,
        cache_features: bool = False,
    ) -> FastExecution:
        """How the net runs, not what it computes: the memory layout of weights and inputs, the form a frozen
        backbone, or frozen BatchNorm statistics, run in ("folded" folds BatchNorm into the convolutions for both;
        "jit" traces a frozen backbone instead), `torch.compile` on the backbone, and whether a frozen
        backbone's features are remembered per image (worth it when the same images come back every epoch, i.e.
        without random augmentation; ~5 KB per image). Outputs agree with the plain net to float rounding."""
        check_frozen_form(frozen_backbone)
        # A compiled backbone serves the frozen phases too (TorchScript cannot trace a compiled module).
        self.frozen_form = "eager" if compile else frozen_backbone
        self.memory_format = memory_format(channels_last)
        self.cache_features = cache_features
        self.forget_frozen_state()
        if compile:
            self.backbone.compile()  # in place, so parameter names (and checkpoints) stay the plain net's
        return self.to(memory_format=self.memory_format)

    def forget_frozen_state(self) -> None:
        """Drop traces and cached features: they describe the backbone's weights as they were."""
        self._frozen_trunks.clear()
        self._feature_cache.clear()

    def features(self, x: Tensor) -> Tensor:
        """Pooled backbone features [B, feature_dim]; a frozen backbone runs without autograd, in its fast form,
        and with `cache_features` only for images it has not seen yet."""
        return self.remembered(x, self._computed_features, "pooled")

    def remembered(self, x: Tensor, compute: Callable[[Tensor], Tensor], kind: str) -> Tensor:
        """`compute(x)`, from what a frozen backbone with `cache_features` remembers of each image (by its pixels)
        where it can, computing only the images it has not seen yet; otherwise simply `compute(x)`."""
        if not (self.backbone_frozen and self.cache_features):
            return compute(x)
        keys = [kind.encode() + hashlib.blake2b(image.cpu().numpy().tobytes(), digest_size=16).digest() for image in x]
        missing = [i for i, key in enumerate(keys) if key not in self._feature_cache]
        if missing:
            for i, f in zip(missing, compute(x[missing]), strict=True):
                self._feature_cache[keys[i]] = f
        return torch.stack([self._feature_cache[key] for key in keys])

    def runs_folded(self) -> bool:
        """Whether the backbone's blocks run folded now: not in the eager form, and BatchNorm on its running
        statistics, i.e. learning with them frozen, or in eval mode without autograd (validation, prediction).
        Eval mode with autograd stays eager: Grad-CAM hooks the blocks themselves."""
        if self.frozen_form == "eager":
            return False
        return self.statistics_frozen or not (self.backbone.training or torch.is_grad_enabled())

    def _computed_features(self, x: Tensor) -> Tensor:
        x = self.normalize(x)
        if self.backbone_frozen:
            with torch.no_grad():
                maps = self._frozen_trunk(x)(x)
        else:
            maps = (self._folded_backbone if self.runs_folded() else self.backbone)(x)
        return F.adaptive_avg_pool2d(maps, 1).flatten(1)

    def _frozen_trunk(self, x: Tensor) -> Callable[[Tensor], Tensor]:
        """The frozen backbone in `frozen_form`; "jit" is traced once per device, precision and layout, and under
        autocast (mixed precision) of a copy in the autocast dtype, as a trace bakes in one precision."""
        if self.frozen_form == "eager":
            return self.backbone
        if self.frozen_form == "folded":
            return self._folded_backbone
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        key = (x.device, dtype, self.memory_format)
        if key not in self._frozen_trunks:
            self._frozen_trunks[key] = trace_frozen(self.backbone, x, dtype)
        return self._frozen_trunks[key]

    @cached_property
    def _folded_backbone(self) -> nn.Sequential:
        """The backbone with BatchNorm folded into its convolutions (`fold_batchnorm`), block by block so that the
        source head can read the blocks it taps. It shares the backbone's modules, so it is built once; held outside
        the module tree (a cached attribute), so state dicts and `parameters()` never list the backbone twice."""
        return nn.Sequential(*(fold_batchnorm(block) for block in self.backbone))

    def __getstate__(self) -> dict[str, Any]:
        """Pickling (DDP spawn, deepcopy) leaves the traced trunks behind; they are rebuilt on first use."""
        state = self.__dict__.copy()
        state["_frozen_trunks"], state["_feature_cache"] = {}, {}
        state.pop("_folded_backbone", None)
        return state


def _forget_frozen_state(net: FastExecution, incompatible_keys: Any) -> None:
    net.forget_frozen_state()
