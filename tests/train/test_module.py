import math

import pytest
import torch
from torch.nn import functional as F

from detective.data.dataset import Batch
from detective.train.metrics import GroupAccuracy
from tests.helpers import make_module


def module_with(**kwargs):
    return make_module(("cat", "dog", "owl"), **kwargs)


def test_loss_is_weighted_ce_plus_bce_by_hand():
    module = module_with()
    subject_logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    source_logits = torch.tensor([1.0, -2.0])
    subjects = torch.tensor([0, 2])
    sources = torch.tensor([1.0, 1.0])

    def log_softmax(row, i):
        return row[i] - math.log(sum(math.exp(v) for v in row))

    ce = -(log_softmax([2.0, 0.0, -1.0], 0) + log_softmax([0.0, 1.0, 0.0], 2)) / 2
    bce = -(math.log(1 / (1 + math.exp(-1.0))) + math.log(1 / (1 + math.exp(2.0)))) / 2
    losses = module.loss(subject_logits, source_logits, subjects, sources)
    assert losses["subject_loss"].item() == pytest.approx(ce, rel=1e-6)
    assert losses["source_loss"].item() == pytest.approx(bce, rel=1e-6)
    assert losses["loss"].item() == pytest.approx(1.0 * ce + 1.5 * bce, rel=1e-6)

    reweighted = module_with(subject_weight=0.5, source_weight=2.0).loss(
        subject_logits, source_logits, subjects, sources
    )
    assert reweighted["loss"].item() == pytest.approx(0.5 * ce + 2.0 * bce, rel=1e-6)


def test_source_pos_weight_and_label_smoothing_change_the_loss():
    args = (torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([-1.0]), torch.tensor([0]), torch.tensor([1.0]))
    plain = module_with().loss(*args)
    assert module_with(source_pos_weight=3.0).loss(*args)["source_loss"].item() == pytest.approx(
        3 * plain["source_loss"].item(), rel=1e-6
    )
    assert module_with(label_smoothing=0.2).loss(*args)["subject_loss"] > plain["subject_loss"]


class FakeTrainer:
    def __init__(self, epoch: int) -> None:
        self.current_epoch = epoch


@pytest.mark.parametrize(
    ("freeze_epochs", "finetune", "frozen_by_epoch"),
    [(2, True, [True, True, False, False]), (0, True, [False] * 4), (1, False, [True] * 4)],
)
def test_two_phase_schedule(freeze_epochs, finetune, frozen_by_epoch, monkeypatch):
    module = module_with(freeze_epochs=freeze_epochs, finetune=finetune)
    seen = []
    for epoch in range(4):
        monkeypatch.setattr(type(module), "current_epoch", property(lambda self, e=epoch: e))
        module.train()
        module.on_train_epoch_start()
        backbone_params = list(module.net.backbone_parameters())
        seen.append(not any(p.requires_grad for p in backbone_params))
        assert all(p.requires_grad for p in module.net.head_parameters())
        bn = next(m for m in module.net.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
        assert bn.training == (not seen[-1])  # BatchNorm in eval exactly while frozen
    assert seen == frozen_by_epoch


@pytest.mark.parametrize("freeze_epochs", [0, 1])
def test_freeze_batchnorm_keeps_statistics_from_the_first_fine_tuning_epoch(freeze_epochs, monkeypatch):
    module = module_with(freeze_epochs=freeze_epochs, freeze_batchnorm=True, finetune=True)
    for epoch in range(freeze_epochs + 2):
        monkeypatch.setattr(type(module), "current_epoch", property(lambda self, e=epoch: e))
        module.train()
        module.on_train_epoch_start()
    assert all(p.requires_grad for p in module.net.backbone_parameters())
    assert module.net.statistics_frozen and module.net.backbone.training
    assert not any(m.training for m in module.net.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_optimizer_gives_the_backbone_a_lower_rate(monkeypatch):
    module = module_with(lr=1e-3, backbone_lr_factor=0.1)
    monkeypatch.setattr(type(module), "trainer", property(lambda self: type("T", (), {"max_epochs": 5})()))
    optimizer = module.configure_optimizers()["optimizer"]
    heads, backbone = optimizer.param_groups
    assert heads["lr"] == pytest.approx(1e-3) and backbone["lr"] == pytest.approx(1e-4)
    assert len(backbone["params"]) == len(list(module.net.backbone_parameters()))


def test_the_optimizer_is_fused_where_torch_has_the_kernel_and_plain_where_it_has_not(monkeypatch):
    module = module_with(lr=1e-3)
    monkeypatch.setattr(type(module), "trainer", property(lambda self: type("T", (), {"max_epochs": 5})()))
    assert module.configure_optimizers()["optimizer"].defaults["fused"]  # on a CPU: torch has it
    plain_adamw = torch.optim.AdamW

    def without_fused_kernel(*args, fused=None, **kwargs):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        return plain_adamw(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", without_fused_kernel)
    optimizer = module.configure_optimizers()["optimizer"]
    assert not optimizer.defaults["fused"]
    before = [p.detach().clone() for p in module.net.parameters()]
    for p in module.net.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()  # the plain form still learns
    assert all(not torch.equal(a, b) for a, b in zip(before, module.net.parameters(), strict=True))


def test_group_accuracy_per_subject():
    metric = GroupAccuracy(3)
    metric.update(torch.tensor([1, 0, 1, 1]), torch.tensor([1, 1, 1, 0]), torch.tensor([0, 0, 1, 2]))
    assert metric.compute().tolist() == [0.5, 1.0, 0.0]


def test_without_subjects_the_loss_is_the_weighted_source_loss_alone():
    module = make_module(())
    assert not module.has_subject_head and module.net.subject_head is None
    losses = module.loss(None, torch.tensor([1.0, -2.0]), torch.tensor([0, 0]), torch.tensor([1.0, 0.0]))
    assert "subject_loss" not in losses
    assert losses["loss"].item() == pytest.approx(1.5 * losses["source_loss"].item())


def test_a_crop_loss_scores_every_crop_against_its_images_label_and_judges_by_their_mean():
    torch.manual_seed(0)
    crops, owner = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), torch.tensor([0, 0, 1, 1])
    batch = Batch(None, crops, owner, torch.tensor([0, 0]), torch.tensor([1.0, 0.0]))
    by_crop = make_module((), source_loss="crop").eval()
    by_image = make_module((), source_loss="image").eval()
    by_image.load_state_dict(by_crop.state_dict())
    per_crop = by_crop.net.source_logits(crops)
    _, judged, _, losses = by_crop.scored(batch)
    expected = F.binary_cross_entropy_with_logits(per_crop, torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert losses["source_loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(judged, per_crop.view(2, 2).mean(1))
    _, judged_as_one, _, image_losses = by_image.scored(batch)
    assert torch.allclose(judged_as_one, judged)
    assert image_losses["source_loss"].item() == pytest.approx(
        F.binary_cross_entropy_with_logits(judged, batch.sources).item(), rel=1e-5
    )
    with pytest.raises(ValueError, match="source_loss must be one of image, crop, got 'pixel'"):
        make_module((), source_loss="pixel")


def test_a_restored_checkpoint_brings_its_own_threshold_and_temperature():
    module = module_with(threshold=0.24, temperature=1.3)  # the last epoch's, as in memory after fitting
    best = {**module.hparams, "threshold": 0.58, "temperature": 2.1}  # the best epoch's
    module.on_load_checkpoint({"hyper_parameters": best})
    assert (module.threshold, module.temperature) == (0.58, 2.1)
    logits = torch.tensor([-4.2, 0.0, 2.1])
    assert module.probability(logits).tolist() == pytest.approx(torch.sigmoid(logits / 2.1).tolist())
