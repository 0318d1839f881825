"""Losses against hand-computed values, the ignore rule, empty masks and float32 under AMP."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seglab.losses import LOSS_TERMS, SegLoss

PIXEL_AND_REGION = ["ce", "dice", "focal", "jaccard", "lovasz", "tversky"]


def test_ce_hand_value_with_ignore_and_class_weights():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[0, 255]]])
    loss, _ = SegLoss({"ce": 1.0}, "multiclass", 2, ignore_index=255)(logits, target)
    assert loss.item() == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 1)), rel=1e-6)
    w = SegLoss({"ce": 1.0}, "multiclass", 2, class_weights=[3.0, 1.0])
    target2 = torch.tensor([[[0, 1]]])
    expected = (
        3 * -math.log(math.exp(2) / (math.exp(2) + 1)) + -math.log(math.e / (1 + math.e))
    ) / 4
    assert w(logits, target2)[0].item() == pytest.approx(expected, rel=1e-6)


def test_binary_ce_is_bce():
    logits = torch.tensor([[[[0.5, -1.0, 2.0]]]])
    target = torch.tensor([[[1, 0, 0]]])
    loss, _ = SegLoss({"ce": 1.0}, "binary", 1)(logits, target)
    expected = F.binary_cross_entropy_with_logits(logits[0, 0], target[0].float())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_dice_hand_value():
    # 2 classes, 4 pixels; probabilities chosen by logits [a, 0] -> softmax.
    logits = torch.tensor([[[[3.0, -3.0, 3.0, -3.0]], [[0.0, 0.0, 0.0, 0.0]]]])
    target = torch.tensor([[[0, 1, 1, 1]]])
    p = logits.softmax(1)[0, :, 0]  # (2, 4)
    g = F.one_hot(target[0, 0], 2).T.float()
    dice = (2 * (p * g).sum(1)) / (p.sum(1) + g.sum(1))
    expected = (1 - dice).mean().item()
    loss, _ = SegLoss({"dice": 1.0}, "multiclass", 2)(logits, target)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_focal_hand_value_binary():
    logits = torch.tensor([[[[1.0, -2.0]]]])
    target = torch.tensor([[[1, 0]]])
    p = torch.sigmoid(logits[0, 0, 0])
    pt = torch.tensor([p[0], 1 - p[1]])
    expected = (-((1 - pt) ** 2) * pt.log()).mean()
    loss, _ = SegLoss({"focal": 1.0}, "binary", 1)(logits, target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_weighted_sum_of_terms():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    total, parts = SegLoss({"ce": 0.5, "dice": 2.0}, "multiclass", 3)(logits, target)
    assert total.item() == pytest.approx(
        0.5 * parts["ce"].item() + 2.0 * parts["dice"].item(), rel=1e-6
    )


@pytest.mark.parametrize("term", LOSS_TERMS)
@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_ignored_pixels_get_zero_gradient_and_change_nothing(term, task):
    """Every term in the registry masks the ignore index before anything else."""
    torch.manual_seed(0)
    c = 1 if task == "binary" else 3
    logits = torch.randn(2, c, 24, 25, requires_grad=True)
    target = torch.randint(0, max(c, 2), (2, 24, 25))
    target[:, :5] = 255
    weight = torch.rand(2, 24, 25) + 0.5
    crit = SegLoss({term: 1.0}, task, c, ignore_index=255)
    loss, _ = crit(logits, target, weight)
    loss.backward()
    assert torch.isfinite(loss)
    assert logits.grad[:, :, :5].abs().max().item() == 0.0
    assert logits.grad[:, :, 5:].abs().max().item() > 0.0
    changed = logits.detach().clone()
    changed[:, :, :5] = torch.randn_like(changed[:, :, :5]) * 10
    again = crit(changed, target, weight)[0].item()
    assert again == pytest.approx(loss.item(), rel=1e-5, abs=1e-6)


def test_out_of_range_target_is_reported():
    crit = SegLoss({"ce": 1.0}, "multiclass", 3, ignore_index=255)
    with pytest.raises(ValueError, match=r"\[7\]"):
        crit(torch.randn(1, 3, 4, 4), torch.full((1, 4, 4), 7))


def test_unknown_term_suggests():
    with pytest.raises(ValueError, match="dice"):
        SegLoss({"dise": 1.0})
    assert set(PIXEL_AND_REGION) <= set(LOSS_TERMS)


def test_empty_prediction_on_empty_target_costs_zero():
    logits = torch.full((2, 1, 8, 8), -30.0)
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    for batch_dice in (False, True):
        loss, _ = SegLoss({"dice": 1.0}, "binary", 1, batch_dice=batch_dice)(logits, target)
        assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_batch_dice_pools_the_batch():
    # image 0 has foreground predicted right; image 1 is empty but predicted positive.
    logits = torch.full((2, 1, 4, 4), -20.0)
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[0, :2] = 1
    logits[0, 0, :2] = 20.0
    logits[1, 0, 0, 0] = 20.0
    per_image = SegLoss({"dice": 1.0}, "binary", 1)(logits, target)[0].item()
    pooled = SegLoss({"dice": 1.0}, "binary", 1, batch_dice=True)(logits, target)[0].item()
    assert per_image == pytest.approx(0.0, abs=1e-5)  # empty image 1 contributes 0 (smp rule)
    assert pooled == pytest.approx(1 - 2 * 8 / (9 + 8), abs=1e-4)  # the false positive counts


def test_dice_is_float32_under_bf16_autocast():
    torch.manual_seed(0)
    logits = torch.randn(64, 3, 64, 64)
    target = torch.randint(0, 3, (64, 64, 64))
    crit = SegLoss({"dice": 1.0, "ce": 1.0}, "multiclass", 3, batch_dice=True)
    ref = crit(logits, target)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = crit(logits.bfloat16(), target)[0]
    assert low.dtype == torch.float32 and torch.isfinite(low)
    assert low.item() == pytest.approx(ref.item(), rel=1e-2)
