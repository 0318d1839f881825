"""Metrics against a hand-built confusion matrix; averaging and ignore rules."""

from __future__ import annotations

import pytest
import torch

from seglab.metrics.segmentation import SegMetrics, decide


def test_against_hand_built_confusion_matrix():
    target = torch.tensor([[0, 0, 1, 1, 2, 2, 255]])
    preds = torch.tensor([[0, 1, 1, 1, 2, 0, 2]])
    m = SegMetrics(3, ignore_index=255)
    m.update(preds, target)
    out = m.compute()
    # confusion (rows truth): [[1,1,0],[0,2,0],[1,0,1]]
    iou = [1 / 3, 2 / 3, 1 / 2]
    dice = [2 / 4, 4 / 5, 2 / 3]
    acc = [1 / 2, 1, 1 / 2]
    assert out["pixel_acc"].item() == pytest.approx(4 / 6)
    assert out["mIoU"].item() == pytest.approx(sum(iou) / 3)
    assert out["dice"].item() == pytest.approx(sum(dice) / 3)
    assert out["mean_acc"].item() == pytest.approx(sum(acc) / 3)
    assert out["IoU/class_1"].item() == pytest.approx(2 / 3)


def test_same_result_in_one_batch_or_many():
    torch.manual_seed(0)
    preds, target = torch.randint(0, 4, (8, 16, 16)), torch.randint(0, 4, (8, 16, 16))
    one, many = SegMetrics(4), SegMetrics(4)
    one.update(preds, target)
    for i in range(8):
        many.update(preds[i : i + 1], target[i : i + 1])
    a, b = one.compute(), many.compute()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].item() == pytest.approx(b[k].item())


def test_absent_class_left_out_of_mean():
    target = torch.tensor([[0, 0, 1, 1]])
    m = SegMetrics(3, class_names=["a", "b", "c"])
    m.update(target.clone(), target)
    out = m.compute()
    assert out["mIoU"].item() == 1.0 and out["dice"].item() == 1.0
    assert "IoU/c" not in out and not any(torch.isnan(v) for v in out.values())


def test_ignored_pixels_change_nothing():
    target = torch.tensor([[0, 1, 255, 255]])
    a, b = SegMetrics(2, ignore_index=255), SegMetrics(2, ignore_index=255)
    a.update(torch.tensor([[0, 1, 0, 0]]), target)
    b.update(torch.tensor([[0, 1, 1, 1]]), target)
    assert a.compute()["mIoU"] == b.compute()["mIoU"] == 1.0


def test_out_of_range_labels_are_reported():
    m = SegMetrics(2, ignore_index=255)
    with pytest.raises(ValueError, match=r"\[5\]"):
        m.update(torch.tensor([[0, 1]]), torch.tensor([[0, 5]]))


def test_decision_rules():
    logits = torch.tensor([[[[0.2, -0.1]]]])
    assert decide(logits, "binary").tolist() == [[[1, 0]]]
    two = torch.tensor([[[[0.0, 2.0]], [[1.0, 0.0]]]])
    assert decide(two, "multiclass").tolist() == [[[1, 0]]]


def test_binary_scores_background_and_foreground():
    m = SegMetrics(2, task="binary", class_names=["bg", "fg"])
    m.update(torch.tensor([[0, 1, 1, 0]]), torch.tensor([[0, 1, 0, 0]]))
    out = m.compute()
    assert out["IoU/fg"].item() == pytest.approx(0.5)
    assert out["dice/fg"].item() == pytest.approx(2 / 3)
