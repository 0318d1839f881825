"""The U-Net 3+ hybrid loss terms: focal, MS-SSIM and IoU."""

from __future__ import annotations

import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

from seglab.losses.hybrid import HybridLoss, focal_loss, iou_loss, ms_ssim, ms_ssim_loss


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small convolutions run faster on one thread than on two contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tm_ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return multiscale_structural_similarity_index_measure(x, y, data_range=1.0, reduction="none")


def test_ms_ssim_matches_torchmetrics_on_smooth_images():
    torch.manual_seed(0)
    x = F.avg_pool2d(torch.rand(2, 1, 200, 200), 9, 1)  # 192 x 192, smooth
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    torch.testing.assert_close(ms_ssim(x, y).flatten(), tm_ms_ssim(x, y), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("block", [1, 2, 4, 8])
def test_ms_ssim_matches_torchmetrics_exactly(block):
    """A checkerboard difference of ``block`` px vanishes after log2(block)+1 poolings, so the
    coarsest scale (where torchmetrics averages a padded map) sees identical images."""
    torch.manual_seed(0)
    x = torch.rand(2, 1, 192, 192) * 0.8 + 0.1
    idx = torch.arange(192) // block % 2
    y = x + 0.1 * ((idx[:, None] ^ idx[None, :]).float() * 2 - 1)
    torch.testing.assert_close(ms_ssim(x, y).flatten(), tm_ms_ssim(x, y), rtol=1e-5, atol=1e-5)


def test_ms_ssim_identity_and_small_images():
    torch.manual_seed(0)
    for size in [(192, 192), (32, 45), (9, 12)]:
        x = torch.rand(2, 2, *size)
        assert torch.equal(ms_ssim(x, x), torch.ones(2, 2))
        assert (ms_ssim(x, torch.rand_like(x)) < 0.9).all()


@pytest.mark.parametrize(("mode", "channels"), [("binary", 1), ("multiclass", 3)])
def test_ms_ssim_loss_zero_for_perfect_positive_otherwise(mode, channels):
    torch.manual_seed(0)
    target = torch.randint(0, max(channels, 2), (2, 40, 52))
    onehot = F.one_hot(target, max(channels, 2)).permute(0, 3, 1, 2).float()
    perfect = (onehot[:, -channels:] * 2 - 1) * 100 if channels == 1 else onehot * 200
    assert ms_ssim_loss(perfect, target, mode).item() == pytest.approx(0, abs=1e-5)
    logits = torch.randn(2, channels, 40, 52, requires_grad=True)
    loss = ms_ssim_loss(logits, target, mode)
    loss.backward()
    assert 0 < loss.item() <= 1 and torch.isfinite(logits.grad).all()


def test_iou_loss_formula():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 16, 16)
    target = torch.randint(0, 2, (2, 16, 16))
    p, g = torch.sigmoid(logits)[:, 0], target.float()
    inter, union = (p * g).sum((1, 2)), (p + g - p * g).sum((1, 2))
    expected = (1 - inter / union).mean()
    torch.testing.assert_close(iou_loss(logits, target, smooth=0.0), expected)
    perfect = (target[:, None].float() * 2 - 1) * 100
    assert iou_loss(perfect, target).item() == pytest.approx(0, abs=1e-6)


def test_focal_matches_smp():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16))
    expected = smp.losses.FocalLoss("multiclass")(logits, target)
    torch.testing.assert_close(focal_loss(logits, target, "multiclass"), expected)


@pytest.mark.parametrize("term", [focal_loss, ms_ssim_loss, iou_loss])
def test_valid_mask_removes_pixels(term):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 24, 24, requires_grad=True)
    target = torch.randint(0, 3, (2, 24, 24))
    valid = torch.ones(2, 24, 24, dtype=torch.bool)
    valid[:, :8] = False
    term(logits, target, mode="multiclass", valid=valid).backward()
    assert (logits.grad[:, :, :8] == 0).all() and logits.grad[:, :, 8:].abs().sum() > 0
    changed = logits.detach().clone()
    changed[:, :, :8] = 50.0
    torch.testing.assert_close(
        term(changed, target, mode="multiclass", valid=valid),
        term(logits.detach(), target, mode="multiclass", valid=valid),
    )


@pytest.mark.parametrize(("mode", "channels"), [("binary", 1), ("multiclass", 4)])
def test_hybrid_loss(mode, channels):
    torch.manual_seed(0)
    logits = torch.randn(2, channels, 48, 40).bfloat16().requires_grad_()
    target = torch.randint(0, max(channels, 2), (2, 48, 40))
    loss_fn = HybridLoss(mode)
    parts = loss_fn.terms(logits, target)
    assert set(parts) == {"focal", "ms_ssim", "iou"}
    loss = loss_fn(logits, target)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, sum(parts.values()))
    loss.backward()
    assert torch.isfinite(logits.grad.float()).all()
    only_iou = HybridLoss(mode, focal=0.0, ms_ssim=0.0, iou=2.0)
    torch.testing.assert_close(only_iou(logits, target), 2 * parts["iou"])
    with pytest.raises(ValueError, match="mode"):
        HybridLoss("multilabel")
