"""A torch-only twin of torchvision's MobileNetV2 trunk, for `DetectiveNet` at prediction time.

Why it exists: `import torchvision` costs about as much as `import torch` again, and a single-image
`predict.py` call is mostly start-up. This module needs torch alone, takes the very same state dict
(same parameter names), runs the same ops in the same order, and is built on the meta device so no
time goes into random initialisation that the checkpoint's weights overwrite anyway. Weights still
come from the checkpoint through `weights_only` loading: nothing executable is ever read from disk.
`tests/predict/test_mobilenet_v2.py` checks names and outputs against `DetectiveNet` bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from detective.model.net import DetectiveNet

# torchvision's MobileNetV2 (width 1.0): expansion t, channels c, repeats n, first stride s.
_MOBILENET_V2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2))
_MOBILENET_V2_LAST_BLOCK = (6, 320, 1, 1)
_MOBILENET_V2_FEATURES = 1280


def _conv_bn_relu6(inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """torchvision's `Conv2dNormActivation` with BatchNorm2d and ReLU6: submodules 0, 1, 2."""
    conv = nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out), nn.ReLU6(inplace=True))


class _InvertedResidual(nn.Module):
    def __init__(self, inp: int, out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = round(inp * expand)
        self.use_res_connect = stride == 1 and inp == out
        layers: list[nn.Module] = [_conv_bn_relu6(inp, hidden, kernel=1)] if expand != 1 else []
        layers += [
            _conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


def _mobilenet_v2_features() -> nn.Sequential:
    layers: list[nn.Module] = [_conv_bn_relu6(3, 32, stride=2)]
    channels = 32
    for t, c, n, s in (*_MOBILENET_V2_BLOCKS, _MOBILENET_V2_LAST_BLOCK):
        for i in range(n):
            layers.append(_InvertedResidual(channels, c, s if i == 0 else 1, t))
            channels = c
    layers.append(_conv_bn_relu6(channels, _MOBILENET_V2_FEATURES, kernel=1))
    return nn.Sequential(*layers)


def build_lite_net(hparams: Mapping[str, Any], state_dict: Mapping[str, Tensor]) -> DetectiveNet | None:
    """The trained `DetectiveNet` with this torch-only trunk, or None where the twin does not cover the backbone."""
    if hparams.get("backbone", "mobilenet_v2") != "mobilenet_v2":
        return None
    with torch.device("meta"):  # no random init: every trunk tensor is replaced by the checkpoint's
        trunk = _mobilenet_v2_features()
    net = DetectiveNet.from_hparams(hparams, trunk=trunk)
    net.load_state_dict(state_dict, strict=True, assign=True)
    return net.eval()
