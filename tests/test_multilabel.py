"""The multilabel path: decision rule, loss and metrics against torch / torchmetrics values,
and through the task."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import (
    multilabel_accuracy,
    multilabel_f1_score,
    multilabel_jaccard_index,
)

from seglab.losses import SegLoss
from seglab.metrics.segmentation import SegMetrics, decide
from seglab.tasks import SegmentationTask

LABELS = 3


def sample(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, LABELS, 6, 7, generator=g) * 2
    target = (torch.rand(2, LABELS, 6, 7, generator=g) > 0.6).long()
    return logits, target


def test_decision_is_each_sigmoid_above_a_half():
    logits, _ = sample()
    expected = (torch.sigmoid(logits) > 0.5).long()
    assert torch.equal(decide(logits, "multilabel"), expected)
    assert decide(logits, "multilabel").shape == logits.shape  # one 0/1 map per label


def test_loss_is_the_mean_bce_of_every_label():
    logits, target = sample(1)
    loss, _ = SegLoss({"ce": 1.0}, "multilabel", LABELS)(logits, target)
    expected = F.binary_cross_entropy_with_logits(logits, target.float())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_loss_leaves_out_pixels_with_an_ignored_label():
    logits, target = sample(2)
    target[0, 1, 2, :4] = 255  # one label ignored: the whole pixel leaves the loss
    loss, _ = SegLoss({"ce": 1.0}, "multilabel", LABELS, ignore_index=255)(logits, target)
    keep = (target != 255).all(1)  # (B, H, W)
    lg = logits.permute(0, 2, 3, 1)[keep]
    tg = target.permute(0, 2, 3, 1)[keep].float()
    expected = F.binary_cross_entropy_with_logits(lg, tg)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_metrics_equal_torchmetrics_per_label():
    logits, target = sample(3)
    preds = decide(logits, "multilabel")
    m = SegMetrics(LABELS, "multilabel")
    m.update(preds[:1], target[:1])
    m.update(preds[1:], target[1:])
    out = m.compute()
    iou = multilabel_jaccard_index(preds, target, LABELS, average="none")
    f1 = multilabel_f1_score(preds, target, LABELS, average="none")
    for c in range(LABELS):
        assert out[f"IoU/class_{c}"].item() == pytest.approx(iou[c].item(), rel=1e-6)
        assert out[f"dice/class_{c}"].item() == pytest.approx(f1[c].item(), rel=1e-6)
    assert out["mIoU"].item() == pytest.approx(iou.mean().item(), rel=1e-6)
    assert out["dice"].item() == pytest.approx(f1.mean().item(), rel=1e-6)
    acc = multilabel_accuracy(preds, target, LABELS, average="micro")
    assert out["pixel_acc"].item() == pytest.approx(acc.item(), rel=1e-6)


def test_metrics_leave_out_ignored_label_values():
    logits, target = sample(4)
    preds = decide(logits, "multilabel")
    target[1, 0, :3] = 255
    m = SegMetrics(LABELS, "multilabel", ignore_index=255)
    m.update(preds, target)
    iou = multilabel_jaccard_index(preds, target, LABELS, average="none", ignore_index=255)
    assert m.compute()["IoU/class_0"].item() == pytest.approx(iou[0].item(), rel=1e-6)


def test_the_task_scores_a_multilabel_batch():
    torch.manual_seed(0)
    task = SegmentationTask(
        model="unet", num_classes=LABELS, task="multilabel",
        model_kwargs={"base_channels": 4, "depth": 2},
    ).eval()  # fmt: skip
    x = torch.randn(2, 3, 16, 16)
    _, target = sample(5)
    target = F.interpolate(target.float(), size=(16, 16)).long()
    with torch.no_grad():
        logits = task.predict_logits(x)
        loss, _ = task.criterion(logits, target)
    assert logits.shape == (2, LABELS, 16, 16)
    assert loss.item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, target.float()).item(), rel=1e-6
    )
    task.val_metrics.update(decide(logits, "multilabel"), target)
    iou = multilabel_jaccard_index((logits > 0).long(), target, LABELS, average="macro")
    assert task.val_metrics.compute()["mIoU"].item() == pytest.approx(iou.item(), rel=1e-6)
