from __future__ import annotations

import copy
import pickle
from typing import ClassVar

import pytest
import torch
from torch import nn

from detective.model.execution import FROZEN_FORMS, check_frozen_form
from detective.model.folding import fold_batchnorm
from detective.model.net import DetectiveNet, freeze_backbone, unfreeze_backbone
from detective.model.tracing import GuardedTrace, trace_frozen
from tests.helpers import ids


def realistic_net(seed: int = 0) -> DetectiveNet:
    """A net whose BatchNorm layers hold non-trivial statistics (at init they are identities, which would hide a
    trace that folds them wrongly)."""
    torch.manual_seed(seed)
    net = DetectiveNet(3)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net


@pytest.fixture
def pixels() -> torch.Tensor:
    """Four random 48 px images, a uint8 batch as the data loader gives it."""
    return torch.randint(0, 256, (4, 3, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def plain_copy(net: DetectiveNet) -> DetectiveNet:
    plain = DetectiveNet(net.num_subjects)
    plain.load_state_dict(net.state_dict())
    return plain.eval()


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4 * float(expected.detach().abs().max()))


@pytest.mark.parametrize("form", FROZEN_FORMS)
@pytest.mark.parametrize("channels_last", [True, False])
def test_fast_forms_compute_what_the_plain_net_computes(pixels, form, channels_last):
    fast = realistic_net().set_speed(channels_last=channels_last, frozen_backbone=form)
    freeze_backbone(fast)
    fast.eval()
    expected = plain_copy(fast)(pixels)
    with torch.no_grad():
        for _ in range(3):  # oneDNN fusion profiles the first runs of a shape: every run must agree
            for got, want in zip(fast(pixels), expected, strict=True):
                assert_close(got, want)
    assert bool(fast._frozen_trunks) == (form == "jit")


def test_under_mixed_precision_the_frozen_trunk_runs_in_bf16_and_agrees_with_eager_autocast(pixels):
    fast = realistic_net().set_speed(frozen_backbone="jit")
    freeze_backbone(fast)
    fast.eval()
    eager = plain_copy(fast)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        for _ in range(3):
            got = fast.features(pixels)
        want = eager.features(pixels)
    assert got.dtype == torch.bfloat16  # a bf16 trace, not the float32 one with autocast ignored
    # bf16 keeps ~3 significant digits; eager autocast rounds at other places than the folded trace
    torch.testing.assert_close(got.float(), want.float(), rtol=0.05, atol=0.05 * float(want.float().abs().max()))
    with torch.no_grad():  # outside autocast the float32 trace is used again, exact as before
        assert_close(fast.features(pixels), eager.features(pixels))


def test_activations_work_in_place_only_while_the_backbone_does_not_learn(pixels):
    net = realistic_net()
    activations = [m for m in net.backbone.modules() if isinstance(m, nn.Hardtanh)]

    def in_place() -> set[bool]:
        return {m.inplace for m in activations}

    assert in_place() == {False}  # built in training mode: fine-tuning
    net.eval()
    assert in_place() == {True}
    net.train()
    freeze_backbone(net)
    assert in_place() == {True}
    unfreeze_backbone(net)
    assert in_place() == {False}

    reference = copy.deepcopy(net)
    for m in reference.backbone.modules():
        if isinstance(m, nn.Hardtanh):
            m.inplace = True  # torchvision's own setting: the same gradients, computed with an extra copy
    for model in (net, reference):
        torch.manual_seed(0)  # the same dropout mask
        subject_logits, source_logits = model(pixels)
        (subject_logits.sum() + source_logits.sum()).backward()
    for got, want in zip(net.backbone_parameters(), reference.backbone_parameters(), strict=True):
        assert_close(got.grad, want.grad)


def test_frozen_backbone_gets_no_gradients_and_the_heads_learn(pixels):
    net = realistic_net().set_speed()
    freeze_backbone(net)
    net.train()
    subject_logits, source_logits = net(pixels)
    (subject_logits.sum() + source_logits.sum()).backward()
    assert all(p.grad is None for p in net.backbone_parameters())
    assert all(p.grad is not None for p in net.head_parameters())


def test_no_stale_trace_after_fine_tuning_or_loading_weights(pixels):
    net = realistic_net().set_speed(frozen_backbone="jit")
    freeze_backbone(net)
    net.eval()
    net.features(pixels)
    unfreeze_backbone(net)  # fine-tuning changes the weights the trace was taken from
    assert not net._frozen_trunks
    with torch.no_grad():
        for p in net.backbone_parameters():
            p.mul_(0.9)
    freeze_backbone(net)
    assert_close(net.features(pixels), plain_copy(net).features(pixels))

    other = realistic_net(seed=1)
    net.load_state_dict(other.state_dict())  # e.g. the best checkpoint before testing
    assert not net._frozen_trunks
    assert_close(net.features(pixels), plain_copy(other).features(pixels))


def test_a_net_with_a_trace_still_pickles_and_copies(pixels):
    net = realistic_net().set_speed(frozen_backbone="jit")
    freeze_backbone(net)
    net.eval()
    expected = net.features(pixels)
    for clone in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert not clone._frozen_trunks  # rebuilt on first use, never shipped
        assert_close(clone.features(pixels), expected)


def test_speed_settings_leave_the_state_dict_alone():
    fast = realistic_net().set_speed(channels_last=True)
    assert fast.backbone[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert list(fast.state_dict()) == list(DetectiveNet(3).state_dict())


def test_trace_needs_eval_mode_and_unknown_forms_are_named(pixels):
    with pytest.raises(ValueError, match="eval mode"):
        trace_frozen(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train(), pixels.float())
    with pytest.raises(ValueError, match=r"model\.frozen_backbone 'fast'"):
        check_frozen_form("fast")


def count_backbone_images(net: DetectiveNet) -> list[int]:
    seen: list[int] = []
    net.backbone.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    return seen


def test_cached_features_are_computed_once_per_image_and_forgotten_when_weights_change(pixels):
    net = realistic_net().set_speed(frozen_backbone="eager", cache_features=True)
    freeze_backbone(net)
    net.train()  # a frozen backbone stays in eval mode, so the same image always gives the same features
    seen = count_backbone_images(net)
    first = net.features(pixels)
    again = net.features(pixels.flip(0))  # same images, another order: nothing recomputed
    mixed = net.features(torch.cat([pixels[:2], 255 - pixels[:1]]))  # one new image
    assert seen == [4, 1]
    assert_close(again, first.flip(0))
    assert_close(mixed[:2], first[:2])
    assert_close(mixed, plain_copy(net).features(torch.cat([pixels[:2], 255 - pixels[:1]])))

    unfreeze_backbone(net)
    freeze_backbone(net)
    net.features(pixels)
    assert seen == [4, 1, 4]  # fine-tuning may have changed the weights: computed afresh


def test_features_are_not_cached_for_a_learning_backbone(pixels):
    net = realistic_net().set_speed(cache_features=True)
    seen = count_backbone_images(net)
    net.features(pixels)
    net.features(pixels)
    assert seen == [4, 4] and not net._feature_cache


@pytest.mark.parametrize("channels_last", [True, False])
def test_folded_batchnorm_learns_exactly_as_batchnorm_in_eval_mode(pixels, channels_last):
    folded_net = realistic_net().set_speed(channels_last=channels_last)
    eager = plain_copy(folded_net).set_speed(channels_last=channels_last)
    x = folded_net.normalize(pixels)
    folded = fold_batchnorm(folded_net.backbone.eval())
    got, want = folded(x), eager.backbone.eval()(x)
    assert_close(got, want)
    (got * want.detach()).sum().backward()
    (want * want.detach()).sum().backward()
    grads = dict(eager.backbone.named_parameters())
    for name, param in folded_net.backbone.named_parameters():  # conv weights and BatchNorm scale and shift
        assert_close(param.grad, grads[name].grad)


def test_folded_form_shares_the_trunk_and_replaces_every_conv_batchnorm_pair():
    trunk = realistic_net().backbone.eval()
    folded = fold_batchnorm(trunk)
    assert ids(folded.parameters()) == ids(trunk.parameters())  # nothing of its own, nothing to go stale
    convs = sum(isinstance(m, nn.Conv2d) for m in trunk.modules())
    assert sum(type(m).__name__ == "_ConvBatchNorm" for m in folded.modules()) == convs == 52
    assert "batch_norm" not in folded.code and "self.0.1" not in folded.code


@pytest.mark.parametrize("form", FROZEN_FORMS)
def test_fine_tuning_with_frozen_statistics_runs_folded_unless_eager(pixels, form):
    net = realistic_net().set_speed(frozen_backbone=form)
    unfreeze_backbone(net, keep_statistics=True)
    net.train()
    subject_logits, _ = net(pixels)  # the source head's dropout is on in train mode; the subject head has none
    assert_close(subject_logits, plain_copy(net)(pixels)[0])
    assert ("_folded_backbone" in net.__dict__) == (form != "eager")
    assert pickle.loads(pickle.dumps(net)).__dict__.get("_folded_backbone") is None  # rebuilt, never pickled


def test_a_frozen_backbone_caches_tap_statistics_apart_from_pooled_features(pixels):
    torch.manual_seed(0)
    net = DetectiveNet(2, source_taps=[3]).set_speed(frozen_backbone="eager", cache_features=True)
    freeze_backbone(net)
    seen: list[int] = []
    net.backbone[0].register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    first = net.tap_statistics(pixels)
    again = net.tap_statistics(pixels.flip(0))  # the same crops, another order: nothing recomputed
    net.features(pixels)  # pooled features of the same pixels are another thing: computed
    assert seen == [4, 4] and first.shape == (4, 48)
    assert_close(again, first.flip(0))


class Breaks:
    """A traced form that fails at every call, as oneDNN's fused kernels do on some CPUs for small maps."""

    made: ClassVar[list[Breaks]] = []

    def __init__(self, *args, **kwargs) -> None:
        self.calls = 0
        Breaks.made.append(self)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        raise RuntimeError(
            "The following operation failed in the TorchScript interpreter.\ncould not create a primitive"
        )


def fail_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every traced form passes its build-time check, then fails at each call."""
    monkeypatch.setattr(torch.jit, "freeze", Breaks)
    monkeypatch.setattr(Breaks, "made", [])
    monkeypatch.setattr(GuardedTrace, "agrees_on", lambda self, example: True)


def test_a_traced_form_failing_at_a_call_falls_back_to_folded_for_the_rest_of_the_run(pixels, monkeypatch):
    fail_at_call_time(monkeypatch)
    net = realistic_net().set_speed(frozen_backbone="jit")
    freeze_backbone(net)
    net.eval()
    want = plain_copy(net)
    with pytest.warns(UserWarning, match="runs folded for the rest of the run.*could not create a primitive") as seen:
        for size in (4, 3, 1):
            assert_close(net.features(pixels[:size]), want.features(pixels[:size]))
    assert len(seen) == 1
    (trunk,) = net._frozen_trunks.values()
    assert trunk.failed and [b.calls for b in Breaks.made] == [1]  # tried once, then never again


def test_a_traced_form_that_fails_its_build_time_check_is_not_used(pixels, monkeypatch):
    monkeypatch.setattr(torch.jit, "freeze", Breaks)
    trunk = realistic_net().backbone.eval()
    with pytest.warns(UserWarning, match="runs folded"):
        form = trace_frozen(trunk, pixels.float())
    assert not isinstance(form, GuardedTrace)
    with torch.no_grad():
        assert_close(form(pixels.float()), trunk(pixels.float()))


@pytest.mark.parametrize("size", [32, 48, 224])
def test_the_jit_form_answers_as_eager_at_small_and_large_sizes_and_odd_batches_on_this_cpu(size):
    """Whether oneDNN can fuse these shapes depends on the CPU: either the trace works or the guard falls back."""
    net = realistic_net().set_speed(frozen_backbone="jit")
    freeze_backbone(net)
    net.eval()
    want = plain_copy(net)
    fusion = torch.jit.onednn_fusion_enabled()
    generator = torch.Generator().manual_seed(size)
    with torch.no_grad():
        for batch in (5, 3, 1, 2):
            x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)
            for _ in range(2):
                assert_close(net.features(x), want.features(x))
    assert torch.jit.onednn_fusion_enabled() == fusion  # no process-wide switch left changed
