"""How `DetectiveNet`'s backbone runs, apart from what the network is: the memory layout of weights and inputs,
the form a frozen backbone runs in (folded, traced or eager), BatchNorm's frozen statistics folded into the
convolutions while the backbone learns, and a frozen backbone's features cached per image.

A frozen backbone runs folded by default: plain PyTorch operators, so it runs on any CPU; the traced form
(`tracing`) is opt-in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cached_property
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from detective.model.folding import fold_batchnorm
from detective.model.tracing import trace_frozen

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


class FastExecution:
    """How a net's backbone runs, apart from what the net is (mixed into `DetectiveNet`, which provides
    `backbone`, `normalize`, `backbone_frozen` and `statistics_frozen`): the memory layout of weights and inputs,
    the folded or traced form of a frozen backbone, BatchNorm's frozen statistics folded into the convolutions, and the
    features a frozen backbone caches per image. None of it is saved: traces and features are rebuilt on use."""

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
        backbone's features are cached per image (worth it when the same images come back every epoch, i.e.
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
        return self.cached(x, self._computed_features, "pooled")

    def cached(self, x: Tensor, compute: Callable[[Tensor], Tensor], kind: str) -> Tensor:
        """`compute(x)`, from what a frozen backbone with `cache_features` has cached of each image (by its pixels)
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
