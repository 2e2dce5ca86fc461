import re
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from detective.model.net import DetectiveNet
from detective.model.pretrained import PretrainedWeightsError, imagenet_cache_path, load_backbone_weights

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SHARED_WEIGHTS = SHARED / "weights" / "mobilenet_v2_imagenet_coral.pth"
CATS_DOGS = SHARED / "data" / "cats_dogs_real"


@pytest.fixture
def full_state() -> dict[str, torch.Tensor]:
    """A full torchvision mobilenet_v2 state dict (random weights stand in for ImageNet ones)."""
    torch.manual_seed(1)
    return torchvision.models.mobilenet_v2().state_dict()


@pytest.fixture
def offline_torch_home(tmp_path, monkeypatch) -> Path:
    """An empty TORCH_HOME, and any download attempt fails at once as it would without a network."""

    def no_network(*args, **kwargs):
        raise URLError("no network in tests")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    return tmp_path / "torch_home"


def save(content, path: Path) -> Path:
    """Raw bytes as they are, anything else through torch.save."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    return path


def assert_backbone_is(net: DetectiveNet, state: dict[str, torch.Tensor], prefix: str = "features.") -> None:
    loaded = net.backbone.state_dict()
    assert loaded.keys() == {k.removeprefix(prefix) for k in state if k.startswith(prefix)}
    for key, value in loaded.items():
        assert torch.equal(value, state[prefix + key]), key


def test_full_torchvision_state_dict_loads_its_features_only(tmp_path, full_state):
    path = save(full_state, tmp_path / "mnv2.pth")
    net = DetectiveNet(3)
    heads_before = [p.clone() for p in net.head_parameters()]
    assert load_backbone_weights(net, pretrained=True, weights_path=str(path)) == f"local file {path}"
    assert_backbone_is(net, full_state)
    assert all(torch.equal(a, b) for a, b in zip(heads_before, net.head_parameters(), strict=True))


def test_backbone_only_state_dict_loads(tmp_path, full_state):
    source = DetectiveNet(2)
    source.backbone.load_state_dict({k.removeprefix("features."): v for k, v in full_state.items() if "features" in k})
    path = save(source.backbone.state_dict(), tmp_path / "backbone.pth")
    net = DetectiveNet(2)
    load_backbone_weights(net, pretrained=True, weights_path=path)
    assert_backbone_is(net, full_state)


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (lambda s: torchvision.models.resnet18().state_dict(), "missing keys, e.g. '0.0.weight'; 122 unexpected keys"),
        (lambda s: {k: v for k, v in s.items() if not k.startswith("features.18.")}, "6 missing keys, e.g. '18.0."),
        (lambda s: {**s, "features.18.0.weight": torch.zeros(640, 320, 1, 1)}, "'18.0.weight': [640, 320, 1, 1] in"),
    ],
    ids=["resnet18", "truncated", "wrong-shape"],
)
def test_mismatched_state_dict_is_refused_clearly(tmp_path, full_state, spoil, problem):
    path = save(spoil(full_state), tmp_path / "other.pth")
    net = DetectiveNet(2)
    before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    with pytest.raises(PretrainedWeightsError) as caught:
        load_backbone_weights(net, pretrained=True, weights_path=path)
    message = str(caught.value)
    assert f"weights file {path} does not fit the mobilenet_v2 backbone" in message
    assert problem in message
    assert "model.pretrained=false" in message
    assert "\n" not in message
    assert all(torch.equal(before[k], v) for k, v in net.backbone.state_dict().items())


def test_missing_weights_file_is_refused_clearly(tmp_path):
    path = tmp_path / "nowhere" / "mnv2.pth"
    with pytest.raises(PretrainedWeightsError, match=f"weights file {path} does not exist; fix model.weights_path"):
        load_backbone_weights(DetectiveNet(2), pretrained=True, weights_path=path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a torch file", "cannot read weights file .*model.weights_path needs a state dict"),
        ([1, 2, 3], "holds a list, not a state dict"),
    ],
)
def test_unreadable_weights_file_is_refused_clearly(tmp_path, content, message):
    path = tmp_path / "bad.pth"
    save(content, path)
    with pytest.raises(PretrainedWeightsError, match=message):
        load_backbone_weights(DetectiveNet(2), pretrained=True, weights_path=path)


def test_weights_path_is_loaded_even_when_pretrained_is_false(tmp_path, full_state):
    path = save(full_state, tmp_path / "mnv2.pth")
    net = DetectiveNet(2)
    assert load_backbone_weights(net, pretrained=False, weights_path=path) == f"local file {path}"
    assert_backbone_is(net, full_state)


def test_pretrained_false_keeps_random_init_and_touches_nothing(offline_torch_home):
    net = DetectiveNet(2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert load_backbone_weights(net, pretrained=False, weights_path=None) == "random init (pretrained=false)"
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not offline_torch_home.exists()


def test_no_cache_and_no_network_fails_at_once_naming_both_fixes(offline_torch_home):
    cache = offline_torch_home / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth"
    assert imagenet_cache_path("mobilenet_v2") == cache
    net = DetectiveNet(2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(PretrainedWeightsError) as caught:
        load_backbone_weights(net, pretrained=True, weights_path=None)
    assert str(caught.value) == (
        f"ImageNet weights for mobilenet_v2 are not cached at {cache} and could not be downloaded "
        "(URLError: <urlopen error no network in tests>); either pass model.weights_path=/path/to/mobilenet_v2.pth "
        f"(a torchvision state dict), place the file at {cache}, or train from scratch with model.pretrained=false"
    )
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert list(cache.parent.iterdir()) == []  # no partial download left behind


def test_cached_imagenet_file_loads_through_torchvision_weights_api(offline_torch_home, full_state):
    cache = imagenet_cache_path("mobilenet_v2")
    cache.parent.mkdir(parents=True)
    save(full_state, cache)  # torchvision checks the hash only when it downloads
    net = DetectiveNet(2)
    assert load_backbone_weights(net, pretrained=True, weights_path=None) == (
        f"ImageNet weights from torchvision cache ({cache})"
    )
    assert_backbone_is(net, full_state)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00" * 100, "cannot read the cached ImageNet weights {cache} .*delete the file"),
        ([1, 2], "cached ImageNet weights {cache} holds a list, not a state dict"),
    ],
)
def test_bad_cached_file_is_refused_naming_it(offline_torch_home, content, message):
    cache = imagenet_cache_path("mobilenet_v2")
    cache.parent.mkdir(parents=True)
    save(content, cache)
    with pytest.raises(PretrainedWeightsError, match=message.format(cache=re.escape(str(cache)))):
        load_backbone_weights(DetectiveNet(2), pretrained=True, weights_path=None)


def load_photos(folder: Path) -> torch.Tensor:
    """The folder's JPEGs as a uint8 batch [N, 3, 160, 160]: squashed and small, still enough to tell cats and dogs."""
    arrays = [np.asarray(Image.open(p).convert("RGB").resize((160, 160))) for p in sorted(folder.glob("*.jpg"))]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def nearest_centroid_accuracy(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Leave-one-out nearest class mean on L2-normalised features."""
    features = torch.nn.functional.normalize(features, dim=1)
    correct = 0
    for i in range(len(features)):
        keep = torch.arange(len(features)) != i
        means = torch.stack([features[keep & (labels == c)].mean(0) for c in (0, 1)])
        correct += int((means @ features[i]).argmax() == labels[i])
    return correct / len(features)


@pytest.mark.skipif(not SHARED_WEIGHTS.is_file(), reason=f"needs the shared ImageNet weights at {SHARED_WEIGHTS}")
@pytest.mark.skipif(not CATS_DOGS.is_dir(), reason=f"needs the shared cat and dog photos at {CATS_DOGS}")
def test_shared_imagenet_weights_give_features_that_separate_cats_from_dogs():
    cats, dogs = load_photos(CATS_DOGS / "cat"), load_photos(CATS_DOGS / "dog")
    images = torch.cat([cats, dogs])
    labels = torch.tensor([0] * len(cats) + [1] * len(dogs))
    net = DetectiveNet(2).eval()
    assert load_backbone_weights(net, pretrained=True, weights_path=SHARED_WEIGHTS).startswith("local file")
    with torch.no_grad():
        # About 0.97 with these weights; a random backbone scores about 0.5.
        assert nearest_centroid_accuracy(net.features(images), labels) >= 0.9
