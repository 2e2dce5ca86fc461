"""The torchvision-free twin must be `DetectiveNet` exactly: same parameter names, same numbers."""

import torch

from detective.model.net import DetectiveNet
from detective.predict.mobilenet_v2 import build_lite_net


def _hparams(**over):
    hp = {
        "subjects": ["cat", "dog", "owl"],
        "backbone": "mobilenet_v2",
        "shared": 24,
        "subject_hidden": 16,
        "source_hidden": 8,
        "dropout": 0.3,
        "mean": [0.5, 0.4, 0.3],
        "std": [0.2, 0.25, 0.3],
    }
    return {**hp, **over}


def _trained_like(hp) -> DetectiveNet:
    """A DetectiveNet whose BatchNorm statistics are not the defaults, as after training."""
    torch.manual_seed(0)
    net = DetectiveNet.from_hparams(hp)
    with torch.no_grad():
        for name, buf in net.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    return net.eval()


def test_lite_net_matches_detective_net_bit_for_bit():
    hp = _hparams()
    full = _trained_like(hp)
    lite = build_lite_net(hp, full.state_dict())
    images = torch.randint(0, 256, (3, 3, 40, 48), dtype=torch.uint8)
    with torch.inference_mode():
        expected, got = full(images), lite(images)
    assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])
    assert got[0].shape == (3, 3) and got[1].shape == (3,)


def test_other_backbones_are_left_to_detective_net():
    assert build_lite_net(_hparams(backbone="resnet18"), {}) is None
