import pytest
import torch
from torch import nn
from torch.nn import functional as F

from detective.constants import IMAGENET_MEAN, IMAGENET_STD
from detective.model.net import TAP_STATISTICS, DetectiveNet, freeze_backbone, unfreeze_backbone
from tests.helpers import ids


@pytest.fixture
def pixels() -> torch.Tensor:
    """Two random 64 px images, a uint8 batch as the data loader gives it."""
    return torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def linear_shapes(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


def bn_state(net: DetectiveNet) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.backbone.state_dict().items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize("num_subjects", [2, 7])
@pytest.mark.parametrize("as_float", [False, True])
def test_output_shapes(pixels, num_subjects, as_float):
    x = pixels.float() / 255 if as_float else pixels
    subject, source = DetectiveNet(num_subjects).eval()(x)
    assert subject.shape == (2, num_subjects)
    assert source.shape == (2,)


def test_without_subjects_there_is_no_subject_head(pixels):
    net = DetectiveNet(0).eval()
    assert net.subject_head is None and all(not n.startswith("subject") for n, _ in net.named_parameters())
    subject, source = net(pixels)
    assert subject is None and source.shape == (2,)


def test_the_source_logit_of_an_image_is_the_mean_of_its_crops_logits(pixels):
    net = DetectiveNet(2).eval()
    crops = torch.cat([pixels, pixels.flip(-1), pixels.flip(-2)])  # 6 crops: image 0 gets 4, image 1 gets 2
    owner = torch.tensor([0, 1, 0, 0, 1, 0])
    with torch.no_grad():
        subject, source = net(pixels, crops, owner)
        per_crop = net(crops)[1]
        assert torch.allclose(source, torch.stack([per_crop[owner == i].mean() for i in (0, 1)]), atol=1e-6)
        assert torch.allclose(subject, net(pixels)[0], atol=1e-6)
        assert net(None, crops, owner)[0] is None  # no subject view needed for the source alone


def test_uint8_input_equals_float_input_in_unit_range(pixels):
    net = DetectiveNet(3).eval()
    with torch.no_grad():
        from_uint8 = net(pixels)
        from_float = net(pixels.float() / 255)
    assert torch.equal(from_uint8[0], from_float[0])
    assert torch.equal(from_uint8[1], from_float[1])


def test_model_applies_its_own_mean_and_std(pixels):
    x = pixels.float() / 255
    default = DetectiveNet(2).eval()
    custom = DetectiveNet(2, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).eval()
    custom.load_state_dict(default.state_dict())
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = F.adaptive_avg_pool2d(default.backbone((x - mean) / std), 1).flatten(1)
        torch.testing.assert_close(default.features(x), expected)
        custom_expected = F.adaptive_avg_pool2d(custom.backbone((x - 0.5) / 0.25), 1).flatten(1)
        torch.testing.assert_close(custom.features(x), custom_expected)


def test_state_dict_holds_weights_only_and_reloads_to_same_outputs(pixels):
    net = DetectiveNet(4).eval()
    assert not {"mean", "std"} & set(net.state_dict())
    clone = DetectiveNet(4).eval()
    clone.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert torch.equal(clone(pixels)[0], net(pixels)[0])


def test_from_hparams_rebuilds_the_architecture_and_ignores_other_keys():
    hparams = {"subjects": ["cat", "dog", "owl"], "shared": 16, "dropout": 0.1, "std": (0.5, 0.5, 0.5), "lr": 0.01}
    net = DetectiveNet.from_hparams(hparams)
    assert linear_shapes(net.shared) == [(1280, 16)]
    assert linear_shapes(net.subject_head) == [(16, 64), (64, 3)]
    assert net.source_head[2].p == 0.1
    assert torch.equal(net.std.flatten(), torch.tensor([0.5, 0.5, 0.5]))


def test_features_then_heads_is_forward(pixels):
    net = DetectiveNet(3).eval()
    with torch.no_grad():
        features = net.features(pixels)
        assert features.shape == (2, 1280)
        subject, source = net.heads(features)
        expected = net(pixels)
    assert torch.equal(subject, expected[0])
    assert torch.equal(source, expected[1])


def test_default_sizes_are_the_original_scripts():
    net = DetectiveNet(5)
    assert linear_shapes(net.shared) == [(1280, 128)]
    assert linear_shapes(net.subject_head) == [(128, 64), (64, 5)]
    assert linear_shapes(net.source_head) == [(128, 32), (32, 1)]
    assert [type(m) for m in net.source_head] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert net.source_head[2].p == 0.3


def test_head_sizes_are_configurable():
    net = DetectiveNet(4, shared=16, subject_hidden=8, source_hidden=6, dropout=0.5)
    assert linear_shapes(net.shared) == [(1280, 16)]
    assert linear_shapes(net.subject_head) == [(16, 8), (8, 4)]
    assert linear_shapes(net.source_head) == [(16, 6), (6, 1)]
    assert net.source_head[2].p == 0.5


def test_dropout_only_on_source_branch_and_only_in_train_mode():
    torch.manual_seed(0)
    net = DetectiveNet(3)
    features = torch.rand(16, 1280)
    with torch.no_grad():
        net.train()
        (subject_a, source_a), (subject_b, source_b) = net.heads(features), net.heads(features)
        assert torch.equal(subject_a, subject_b)
        assert not torch.equal(source_a, source_b)
        net.eval()
        assert torch.equal(net.heads(features)[1], net.heads(features)[1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_subjects": 1}, r"num_subjects must be 0 \(no subject head\) or at least 2"),
        ({"num_subjects": 2, "shared": 0}, "shared must be at least 1"),
        ({"num_subjects": 2, "dropout": 1.0}, "dropout must be in"),
        ({"num_subjects": 2, "std": (0.2, 0.0, 0.2)}, "mean and std"),
        ({"num_subjects": 2, "backbone": "resnet9000"}, "unknown backbone 'resnet9000': use one of mobilenet_v2"),
    ],
)
def test_bad_arguments_are_refused_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DetectiveNet(**kwargs)


def test_grayscale_input_is_refused_clearly():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\], got \[2, 1, 64, 64\]"):
        DetectiveNet(2)(torch.zeros(2, 1, 64, 64, dtype=torch.uint8))


def test_backbone_and_head_parameters_partition_the_net():
    net = DetectiveNet(3)
    backbone, heads = ids(net.backbone_parameters()), ids(net.head_parameters())
    assert backbone and heads and not backbone & heads
    assert backbone | heads == ids(net.parameters())


def test_freeze_and_unfreeze_toggle_exactly_the_backbone(pixels):
    net = DetectiveNet(3)
    freeze_backbone(net)
    assert ids(p for p in net.parameters() if p.requires_grad) == ids(net.head_parameters())
    subject, source = net(pixels)
    (subject.sum() + source.sum()).backward()
    assert all(p.grad is None for p in net.backbone_parameters())
    assert all(p.grad is not None for p in net.head_parameters())

    unfreeze_backbone(net)
    assert all(p.requires_grad for p in net.parameters())
    assert net.backbone.training


def test_frozen_backbone_keeps_batchnorm_statistics_in_train_mode(pixels):
    net = DetectiveNet(3)
    freeze_backbone(net)
    net.train()  # as Lightning does at the start of each epoch
    assert not any(m.training for m in net.backbone.modules())
    assert net.source_head.training
    before = bn_state(net)
    net(pixels)
    after = bn_state(net)
    assert all(torch.equal(before[k], after[k]) for k in before)

    unfreeze_backbone(net)
    net(pixels)
    changed = bn_state(net)
    assert not torch.equal(before["0.1.running_mean"], changed["0.1.running_mean"])


def test_eval_on_frozen_net_then_unfreeze_follows_net_mode():
    net = DetectiveNet(2)
    freeze_backbone(net)
    net.eval()
    unfreeze_backbone(net)
    assert not net.backbone.training
    net.train()
    assert net.backbone.training


def test_fine_tuning_with_kept_statistics_learns_weights_but_not_batchnorm_statistics(pixels):
    net = DetectiveNet(3)
    freeze_backbone(net)
    unfreeze_backbone(net, keep_statistics=True)
    net.train()  # as Lightning does at the start of each epoch: BatchNorm stays in eval, the rest trains
    assert net.backbone.training and not any(isinstance(m, nn.BatchNorm2d) and m.training for m in net.modules())
    before = bn_state(net)
    subject, source = net(pixels)
    (subject.sum() + source.sum()).backward()
    after = bn_state(net)
    assert all(torch.equal(before[k], after[k]) for k in before)
    # Every convolution weight and BatchNorm scale and shift gets a gradient.
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.backbone_parameters())
    assert set(net.state_dict()) == set(DetectiveNet(3).state_dict())  # the folded form is not saved

    unfreeze_backbone(net)  # statistics learn again
    net(pixels)
    assert not torch.equal(before["0.1.running_mean"], bn_state(net)["0.1.running_mean"])


def test_a_source_head_on_taps_reads_the_mean_and_spread_of_early_blocks(pixels):
    torch.manual_seed(0)
    net = DetectiveNet(0, source_taps=[3, 1]).eval()
    assert net.source_taps == (1, 3) and linear_shapes(net.source_shared) == [(2 * (16 + 24), 128)]
    maps = net.backbone[:2](net.normalize(pixels))
    first = torch.cat([maps.mean((2, 3)), maps.std((2, 3))], 1)
    assert torch.allclose(net.tap_statistics(pixels)[:, :32], first, atol=1e-5)
    crops, owner = pixels, torch.tensor([0, 0])
    assert torch.allclose(net(None, crops, owner)[1], net.source_logits(crops).mean()[None], atol=1e-6)


def test_novelty_is_small_on_crops_like_the_training_ones_and_large_on_others():
    torch.manual_seed(0)
    net = DetectiveNet(0, source_taps=[1, 3])
    freeze_backbone(net)
    noise = torch.Generator().manual_seed(1)
    seen = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=noise)
    net.source_shared[0].momentum = None  # the running statistics become the plain average over the batches
    for batch in seen.split(16):
        net(None, batch, torch.arange(len(batch)))
    net.eval()
    like = torch.randint(0, 256, (72, 3, 32, 32), dtype=torch.uint8, generator=noise)  # the same kind of pixels
    flat = torch.full((8, 3, 32, 32), 128, dtype=torch.uint8)  # no texture at all: statistics far from the noise's
    with torch.no_grad():
        logits, novelty = net.judged(like)
        assert torch.equal(logits, net.source_logits(like)) and novelty.shape == (72,)
        assert float(net.judged(flat)[1].min()) > 10 * float(novelty.max())
        with torch.enable_grad():  # one pass, as training runs it, against the chunks of inference
            assert torch.allclose(net.judged(like)[1], novelty, rtol=1e-4)
    assert DetectiveNet(2).eval().judged(like)[1] is None  # a source head on pooled features has no taps to read


def test_without_subjects_only_the_tapped_blocks_learn_and_a_batch_of_one_trains(pixels):
    net = DetectiveNet(0, source_taps=[3]).train()
    assert net.shared is None
    assert ids(net.backbone_parameters()) == ids(net.backbone[:4].parameters())
    freeze_backbone(net)
    unfreeze_backbone(net)
    assert not any(p.requires_grad for p in net.backbone[4:].parameters())
    net(None, pixels[:1], torch.tensor([0]))[1].sum().backward()  # one crop: batch statistics are undefined
    assert all(p.grad is not None for p in net.backbone[:4].parameters())


def test_with_subjects_taps_leave_the_subject_path_as_it_was(pixels):
    torch.manual_seed(0)
    plain = DetectiveNet(3).eval()
    tapped = DetectiveNet(3, source_taps=[6]).eval()
    tapped.load_state_dict(plain.state_dict(), strict=False)
    assert torch.allclose(tapped(pixels)[0], plain(pixels)[0])
    assert ids(tapped.backbone_parameters()) == ids(tapped.backbone.parameters())
    assert tapped.source_block() is tapped.backbone[6] and plain.source_block() is plain.backbone[-1]


def test_detail_is_the_spread_of_what_a_local_mean_leaves_out():
    flat = torch.full((1, 2, 6, 6), 3.0)
    stripes = torch.arange(6.0).remainder(2).expand(1, 2, 6, 6)  # columns 0, 1, 0, 1, ...: pure fine texture
    ramp = torch.arange(6.0).expand(1, 2, 6, 6)  # a wider spread of values, but smooth
    assert TAP_STATISTICS["detail"](flat).abs().max() < 1e-6
    assert TAP_STATISTICS["std"](ramp).min() > TAP_STATISTICS["std"](stripes).max()  # what std alone sees
    assert TAP_STATISTICS["detail"](stripes).min() > 2 * TAP_STATISTICS["detail"](ramp).max()  # a ramp: edges only


def test_fineness_is_the_share_of_spread_in_fine_texture_whatever_the_contrast():
    stripes = torch.arange(6.0).remainder(2).expand(1, 2, 6, 6)
    ramp = torch.arange(6.0).expand(1, 2, 6, 6)
    fineness = TAP_STATISTICS["fineness"]
    assert torch.allclose(fineness(10 * stripes), fineness(stripes), atol=1e-2)  # contrast barely moves it
    assert torch.allclose(fineness(ramp + 5), fineness(ramp), atol=1e-5)  # nor brightness
    assert fineness(stripes).min() > fineness(ramp).max() + 1
    for value in (0.0, 0.1, 3.7, 6.0):  # a flat channel reads 0 exactly, whatever rounding does to its mean
        assert fineness(torch.full((1, 2, 56, 56), value)).abs().max() == 0


def test_a_source_head_reads_the_statistics_it_is_given_per_tapped_block(pixels):
    net = DetectiveNet(0, source_taps=[1, 3], source_statistics=["mean", "std", "detail"]).eval()
    assert linear_shapes(net.source_shared) == [(3 * (16 + 24), 128)]
    maps = net.backbone[:2](net.normalize(pixels))
    first = torch.cat([maps.mean((2, 3)), maps.std((2, 3)), TAP_STATISTICS["detail"](maps)], 1)
    assert torch.allclose(net.tap_statistics(pixels)[:, :48], first, atol=1e-5)
    with pytest.raises(ValueError, match="source_statistics must be distinct names of mean, std, detail, fineness"):
        DetectiveNet(0, source_taps=[1], source_statistics=["mean", "kurtosis"])


@pytest.mark.parametrize("taps", [[19], [-1], [3, 3]])
def test_taps_outside_the_backbone_are_refused(taps):
    with pytest.raises(ValueError, match=r"source_taps must be distinct backbone block indices in 0\.\.18"):
        DetectiveNet(2, source_taps=taps)
