"""DetectiveNet: a torchvision backbone with two heads, subject (which class) and source (real or AI).

The layer sizes default to shared 128, subject 64, source 32, dropout 0.3. Both heads
return logits; softmax/sigmoid belong to inference, and the losses take logits for numerical stability.
Input normalisation lives inside the model, so images stay uint8 until the batch and an exported model needs
nothing but pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from detective.constants import CPU_CROP_CHUNK, GPU_CROP_CHUNK, IMAGENET_MEAN, IMAGENET_STD
from detective.model.execution import FastExecution


@dataclass(frozen=True)
class BackboneSpec:
    """How to build a randomly initialised convolutional trunk (an `nn.Sequential` of blocks), the width of its
    pooled features, and the channels each block puts out (for the source head's taps)."""

    build: Callable[[], nn.Module]
    feature_dim: int
    block_channels: tuple[int, ...]


def _mobilenet_v2_trunk() -> nn.Module:
    import torchvision  # here, not at the top: it costs seconds, and prediction can do without it

    # weights=None: pretrained weights are loaded by `pretrained.py`, so rebuilding from a checkpoint never
    # needs the network.
    return torchvision.models.mobilenet_v2(weights=None).features


# torchvision's MobileNetV2 `features`: the stem, 17 inverted residual blocks, the final 1x1 convolution.
_MOBILENET_V2_CHANNELS = (32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320, 1280)
BACKBONES: dict[str, BackboneSpec] = {
    "mobilenet_v2": BackboneSpec(_mobilenet_v2_trunk, 1280, _MOBILENET_V2_CHANNELS),
}


def backbone_spec(name: str) -> BackboneSpec:
    """The registered backbone called `name`; a ValueError lists the known ones."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}: use one of {', '.join(sorted(BACKBONES))}") from None


def check_taps(taps: Sequence[int], spec: BackboneSpec) -> tuple[int, ...]:
    """`taps` as a sorted tuple of distinct block indices of the backbone; a ValueError names the valid range."""
    blocks = len(spec.block_channels)
    if any(not 0 <= int(t) < blocks for t in taps) or len(set(taps)) != len(taps):
        raise ValueError(f"source_taps must be distinct backbone block indices in 0..{blocks - 1}, got {list(taps)}")
    return tuple(sorted(int(t) for t in taps))


def _check_positive(**sizes: int) -> None:
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


def _std(x: Tensor) -> Tensor:
    """`x.std((2, 3))` (per channel, Bessel-corrected) as two passes of sums: `Tensor.std` reduces channels-last
    maps several times slower, and these statistics run on every tapped block of every crop."""
    centred = x - x.mean((2, 3), keepdim=True)
    return (centred.square_().sum((2, 3)) / (x.shape[2] * x.shape[3] - 1)).sqrt()


def _detail(x: Tensor) -> Tensor:
    """Per-channel standard deviation of what a 3x3 local mean leaves out: the maps' finest texture, where
    generators' upsampling and denoising traces sit; mean and standard deviation mostly miss it."""
    return _std(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False).neg_().add_(x))


FINENESS_FLOOR = 1e-2  # added to both spreads: far below a live channel's (0.2-4 typical), far above rounding


def fineness_of(detail: Tensor, std: Tensor) -> Tensor:
    """log(detail / standard deviation) per channel: how much of the maps' spread lies in their finest texture,
    whatever the contrast and brightness of the image; the scale-free form of `detail`. (`FINENESS_FLOOR` keeps
    flat channels at 0.)"""
    return ((detail + FINENESS_FLOOR) / (std + FINENESS_FLOOR)).log()


def _fineness(x: Tensor) -> Tensor:
    """`fineness_of` the maps' spreads, measured on the maps minus their first pixel (the same spreads): a constant
    channel then reads exactly 0. Otherwise rounding in its mean leaves a spread of ~1e-7 that differs between
    runtimes, and the source head, standardising a feature that never varied in training, would magnify it."""
    shifted = x - x[:, :, :1, :1]
    return fineness_of(_detail(shifted), _std(shifted))


# What the source head may read of each tapped block's maps [N, C, H, W] -> [N, C].
TAP_STATISTICS: dict[str, Callable[[Tensor], Tensor]] = {
    "mean": lambda x: x.mean((2, 3)),
    "std": _std,
    "detail": _detail,
    "fineness": _fineness,
}


def check_statistics(names: Sequence[str]) -> tuple[str, ...]:
    """`names` as a tuple of distinct known tap statistics; a ValueError lists the known ones."""
    if not names or any(n not in TAP_STATISTICS for n in names) or len(set(names)) != len(names):
        raise ValueError(f"source_statistics must be distinct names of {', '.join(TAP_STATISTICS)}, got {list(names)}")
    return tuple(names)


def crop_chunk(x: Tensor) -> int:
    """How many of `x`'s crops one backbone call takes without autograd, on `x`'s device."""
    return CPU_CROP_CHUNK if x.device.type == "cpu" else GPU_CROP_CHUNK


# The constructor arguments that define the architecture; a checkpoint stores them as hyperparameters.
ARCHITECTURE_KEYS = (
    "backbone",
    "shared",
    "subject_hidden",
    "source_hidden",
    "dropout",
    "mean",
    "std",
    "source_taps",
    "source_statistics",
)


class BatchStandardize(nn.BatchNorm1d):
    """BatchNorm1d that uses its running statistics for a batch of one, where batch statistics are undefined (the
    last training batch, or one whose other images failed to decode)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training and len(x) == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class DetectiveNet(FastExecution, nn.Module):
    """Backbone + global average pooling -> shared layer -> subject logits [B, S] and source logits [B].

    With `source_taps` the source head reads other features than the subject head: per-channel statistics of
    those backbone blocks' maps (`source_statistics`: names in `TAP_STATISTICS`), standardised, then its own
    shared layer. Generators leave their traces in the statistics of early, high-resolution maps, which the last
    block's pooled, semantic features have mostly averaged away; the source head then needs only the backbone up to
    its deepest tap.

    What the network is lives here; how its backbone runs (memory layout, traced or folded forms, cached
    features) comes from `detective.model.execution.FastExecution`.

    `forward` takes images [B, 3, H, W], uint8 in [0, 255] or float in [0, 1]; the model scales and normalises
    them with `mean`/`std`. A source logit above 0 means "AI-generated".
    """

    def __init__(
        self,
        num_subjects: int,
        *,
        backbone: str = "mobilenet_v2",
        shared: int = 128,
        subject_hidden: int = 64,
        source_hidden: int = 32,
        dropout: float = 0.3,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        source_taps: Sequence[int] = (),
        source_statistics: Sequence[str] = ("mean", "std"),
        trunk: nn.Module | None = None,
    ) -> None:
        """`source_taps`: backbone blocks the source head reads (empty: the pooled last block, as the subject head);
        `source_statistics`: what it reads of each (names in `TAP_STATISTICS`; the default is what checkpoints from
        before the choice hold); `trunk`: a ready-made backbone of the same layout (e.g. the torchvision-free
        inference twin)."""
        super().__init__()
        if num_subjects == 1 or num_subjects < 0:
            raise ValueError(f"num_subjects must be 0 (no subject head) or at least 2, got {num_subjects}")
        _check_positive(shared=shared, subject_hidden=subject_hidden, source_hidden=source_hidden)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values each (std > 0), got mean={mean}, std={std}")
        spec = backbone_spec(backbone)
        self.backbone_name = backbone
        self.num_subjects = num_subjects
        self.feature_dim = spec.feature_dim
        self.source_taps = check_taps(source_taps, spec)
        self.source_statistics = check_statistics(source_statistics)
        self.backbone_frozen = False
        self.statistics_frozen = False  # the backbone learns with BatchNorm's running statistics kept (eval mode)
        self._init_execution()
        # Not persistent: mean/std are constructor arguments (hence hyperparameters), and the state dict holds
        # learned weights only.
        self.register_buffer("mean", torch.tensor([float(v) for v in mean]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([float(v) for v in std]).view(1, 3, 1, 1), persistent=False)
        self.backbone = spec.build() if trunk is None else trunk
        uses_pooled = num_subjects or not self.source_taps
        self.shared = nn.Sequential(nn.Linear(spec.feature_dim, shared), nn.ReLU()) if uses_pooled else None
        tap_dim = len(self.source_statistics) * sum(spec.block_channels[t] for t in self.source_taps)
        self.source_shared = None
        if self.source_taps:
            self.source_shared = nn.Sequential(BatchStandardize(tap_dim), nn.Linear(tap_dim, shared), nn.ReLU())
        # Source-only data (no subject folders) trains no subject head at all.
        self.subject_head = (
            nn.Sequential(nn.Linear(shared, subject_hidden), nn.ReLU(), nn.Linear(subject_hidden, num_subjects))
            if num_subjects
            else None
        )
        self.source_head = nn.Sequential(
            nn.Linear(shared, source_hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(source_hidden, 1)
        )
        self._place_activations()

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any], trunk: nn.Module | None = None) -> DetectiveNet:
        """Build from saved hyperparameters (a checkpoint's), ignoring the keys that are not the net's."""
        return cls(
            len(hparams["subjects"]) if len(hparams["subjects"]) >= 2 else 0,
            trunk=trunk,
            **{k: hparams[k] for k in ARCHITECTURE_KEYS if k in hparams},
        )

    def normalize(self, x: Tensor) -> Tensor:
        """uint8 [0, 255] or float [0, 1] images -> (x - mean) / std in the model's dtype and memory layout."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {list(x.shape)}")
        scale = 255.0 if x.dtype == torch.uint8 else 1.0
        x = x.contiguous(memory_format=self.memory_format)  # on the uint8 batch: a quarter of the bytes to move
        # One multiply-add per pixel (x * 1/(scale*std) - mean/std): half the time of scaling, subtracting, dividing.
        return torch.addcmul(-self.mean / self.std, x.to(self.mean.dtype), 1.0 / (scale * self.std))

    def heads(self, features: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """Pooled features [B, feature_dim] -> (subject logits [B, num_subjects] or None without a subject head,
        source logits [B] or None when the source head reads taps instead)."""
        h = self.shared(features)
        subject = self.subject_head(h) if self.subject_head is not None else None
        return subject, None if self.source_taps else self.source_head(h).squeeze(-1)

    def forward(
        self, images: Tensor | None, crops: Tensor | None = None, owner: Tensor | None = None
    ) -> tuple[Tensor | None, Tensor]:
        """(subject logits [B, S] or None, source logits [B]). Without `crops` both heads read `images`; with them
        the source head reads the crops and each image's source logit is the mean of its crops' (`owner[n]` is crop
        n's image), and `images` may be None when there is no subject head."""
        if crops is None:
            if images is None:
                raise ValueError("DetectiveNet needs images, crops, or both")
            return self.both_heads(images)
        if owner is None:
            raise ValueError("crops need their owner: the index of each crop's image")
        subject, per_crop, _ = self.crop_heads(images, crops)
        return subject, mean_by_owner(per_crop, owner)

    def crop_heads(self, images: Tensor | None, crops: Tensor) -> tuple[Tensor | None, Tensor, Tensor | None]:
        """(subject logits of `images`, or None without images or subject head; a source logit per crop [N]; each
        crop's novelty [N], or None when the source head reads no taps)."""
        subject = self.subject_logits(images) if images is not None else None
        return subject, *self.judged(crops)

    def both_heads(self, images: Tensor) -> tuple[Tensor | None, Tensor]:
        """Both heads on the same images: one backbone pass, unless the source head reads taps."""
        if not self.source_taps:
            return self.heads(self.features(images))
        return self.subject_logits(images), self.source_logits(images)

    def subject_logits(self, images: Tensor) -> Tensor | None:
        """Subject logits [B, S] of downscaled images, or None without a subject head (no backbone pass then)."""
        return self.heads(self.features(images))[0] if self.subject_head is not None else None

    def source_logits(self, x: Tensor) -> Tensor:
        """A source logit per image or crop [N]."""
        return self.judged(x)[0]

    def judged(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(a source logit per image or crop [N], its novelty [N] or None without taps); without autograd in
        chunks, so that a batch of images with a grid of crops each never holds all their activations at once.

        Novelty: the mean square of the tap statistics as the source head standardises them with its training
        crops' running mean and variance; small on crops like those, larger the further a crop's statistics lie
        from everything the head was trained on (another camera, compression or generator)."""
        if not torch.is_grad_enabled() and len(x) > crop_chunk(x):
            logits, novelty = zip(*(self.judged(chunk) for chunk in x.split(crop_chunk(x))), strict=True)
            return torch.cat(logits), None if novelty[0] is None else torch.cat(novelty)
        if not self.source_taps:
            return self.heads(self.features(x))[1], None
        standardized = self.source_shared[0](self.tap_statistics(x))
        logits = self.source_head(self.source_shared[1:](standardized)).squeeze(-1)
        return logits, standardized.detach().square().mean(1)

    def tap_statistics(self, x: Tensor) -> Tensor:
        """`source_statistics` of each tapped block's maps, per channel [N, tap_dim]; runs the backbone only
        up to the deepest tap, folded where BatchNorm keeps its running statistics (`runs_folded`), without
        autograd while it is frozen (and then, with `cache_features`, once per image or crop)."""
        return self.cached(x, self._computed_tap_statistics, "taps")

    def _computed_tap_statistics(self, x: Tensor) -> Tensor:
        if self.backbone_frozen and len(x) > crop_chunk(x):  # no autograd through it: chunks bound the activations
            return torch.cat([self._computed_tap_statistics(chunk) for chunk in x.split(crop_chunk(x))])
        x = self.normalize(x)
        statistics = []
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.backbone_frozen):
            blocks = self._folded_backbone if self.runs_folded() else self.backbone
            for index, block in enumerate(blocks[: self.source_taps[-1] + 1]):
                x = block(x)
                if index in self.source_taps:
                    statistics += [TAP_STATISTICS[name](x) for name in self.source_statistics]
        return torch.cat(statistics, 1)

    def source_block(self) -> nn.Module:
        """The deepest backbone block the source head reads (Grad-CAM's layer for it)."""
        return self.backbone[self.source_taps[-1] if self.source_taps else -1]

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """The backbone's parameters that reach an output: without a subject head, a source head on taps never
        uses the blocks after its deepest one (they stay frozen, so no process of a DDP run waits for their
        gradients)."""
        if self.source_taps and not self.subject_head:
            return self.backbone[: self.source_taps[-1] + 1].parameters()
        return self.backbone.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        heads = (self.shared, self.source_shared, self.subject_head, self.source_head)
        return chain.from_iterable(h.parameters() for h in heads if h is not None)

    def train(self, mode: bool = True) -> DetectiveNet:
        """Like `nn.Module.train`, but a frozen backbone stays in eval mode, and so does BatchNorm while its
        statistics are frozen, so that their running statistics hold."""
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        elif self.statistics_frozen:
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        self._place_activations()
        return self

    def _place_activations(self) -> None:
        """In-place activations (torchvision's ReLU6) only while the backbone does not learn: without autograd they
        spare a copy, but under autograd each one first clones its input, so out of place is faster there."""
        in_place = not self.backbone.training
        for module in self.backbone.modules():
            if isinstance(module, (nn.Hardtanh, nn.ReLU)):
                module.inplace = in_place


def mean_by_owner(values: Tensor, owner: Tensor) -> Tensor:
    """The mean of `values` [N] per owner: [max(owner) + 1]; how an image's crops make one source logit."""
    count = int(owner.max()) + 1 if len(owner) else 0
    sums = torch.zeros(count, dtype=values.dtype, device=values.device).index_add_(0, owner, values)
    return sums / torch.bincount(owner, minlength=count).to(values.dtype)


def freeze_backbone(net: DetectiveNet) -> None:
    """Stop training the backbone: no gradients, and BatchNorm uses (and keeps) its running statistics.

    The whole backbone goes to eval mode, and stays there through later `net.train()` calls until
    `unfreeze_backbone`, as Keras does for a layer with `trainable=False`.
    """
    net.backbone_frozen = True
    net.backbone.requires_grad_(False)
    net.backbone.eval()
    net._place_activations()
    net.forget_frozen_state()  # traced and cached from the weights as they are now


def unfreeze_backbone(net: DetectiveNet, keep_statistics: bool = False) -> None:
    """Train the backbone again (fine-tuning); its mode follows the net's. With `keep_statistics`, BatchNorm
    keeps the pretrained running statistics (eval mode, as Keras advises for fine-tuning) and only its scale and
    shift learn; the backbone then runs with BatchNorm folded into its convolutions (`fold_batchnorm`)."""
    net.backbone_frozen = False
    net.statistics_frozen = keep_statistics
    net.forget_frozen_state()  # the weights will change; stale traces or features must never be used again
    for parameter in net.backbone_parameters():
        parameter.requires_grad_(True)
    net.train(net.training)
