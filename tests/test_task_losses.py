"""The task's loss hooks and inference options against values computed here from the model's
own outputs: deep-supervision weighting (sum and mean), the CGM term, PSPNet's auxiliary loss,
and flip / multi-scale TTA through ``predict_logits``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seglab.models import ModelOutput
from seglab.tasks import ContextTask, SegmentationTask, UNetFamilyTask

TINY = {"base_channels": 4, "depth": 3}


def batch(classes: int = 3, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.randint(0, classes, (2, size, size), generator=g)
    mask[1] = 0  # the second image holds no foreground (the CGM's negative)
    return {"image": torch.randn(2, 3, size, size, generator=g), "mask": mask}


def train_output(task, b) -> ModelOutput:
    torch.manual_seed(0)
    task.train()
    out = task(b["image"])
    assert isinstance(out, ModelOutput)
    return out


@pytest.mark.parametrize("side_loss", ["sum", "mean"])
def test_deep_supervision_weights_each_side_loss(side_loss):
    task = UNetFamilyTask(
        model="unetplusplus", num_classes=3,
        model_kwargs={"base_channels": 4, "depth": 4, "deep_supervision": True},
        side_weights=[0.5, 2.0], side_loss=side_loss,
    )  # fmt: skip
    b = batch()
    out = train_output(task, b)
    assert len(out.side) == 2
    loss, parts = task.compute_loss(out, b)
    ce = [F.cross_entropy(t, b["mask"]) for t in (out.logits, *out.side)]
    total = ce[0] + 0.5 * ce[1] + 2.0 * ce[2]
    expected = total if side_loss == "sum" else total / (1 + 0.5 + 2.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["loss/side1"].item() == pytest.approx(ce[2].item(), rel=1e-5)


def test_cgm_adds_the_weighted_bce_of_has_foreground():
    task = UNetFamilyTask(
        model="unet3plus", num_classes=1, task="binary",
        model_kwargs={**TINY, "cat_channels": 4, "cgm": True}, cls_weight=0.3,
    )  # fmt: skip
    b = batch(classes=2)
    out = train_output(task, b)
    assert out.cls is not None and not out.side
    loss, parts = task.compute_loss(out, b)
    seg = F.binary_cross_entropy_with_logits(out.logits[:, 0], b["mask"].float())
    has_fg = torch.tensor([[1.0], [0.0]])
    cls = F.binary_cross_entropy_with_logits(out.cls.reshape(2, 1), has_fg)
    assert parts["loss/cls"].item() == pytest.approx(cls.item(), rel=1e-5)
    assert loss.item() == pytest.approx((seg + 0.3 * cls).item(), rel=1e-5)


def test_pspnet_auxiliary_loss_is_weighted_in():
    task = ContextTask(
        model="pspnet", num_classes=3, encoder_name="resnet18", aux_weight=0.25,
        model_kwargs={"aux_head": True},
    )  # fmt: skip
    b = batch(size=64)
    out = train_output(task, b)
    assert out.aux is not None and out.aux.shape == out.logits.shape
    loss, parts = task.compute_loss(out, b)
    main, aux = F.cross_entropy(out.logits, b["mask"]), F.cross_entropy(out.aux, b["mask"])
    assert parts["loss/aux"].item() == pytest.approx(aux.item(), rel=1e-5)
    assert loss.item() == pytest.approx((main + 0.25 * aux).item(), rel=1e-5)


def test_flip_and_scale_tta_through_the_task():
    torch.manual_seed(0)
    tta = {"flip": True, "scales": [0.5, 1.0]}
    task = SegmentationTask(model="unet", num_classes=3, model_kwargs=TINY, tta=tta).eval()
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        got = task.predict_logits(x)
        views = []
        for s in (0.5, 1.0):
            xs = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear")
            for flip in (False, True):
                y = task.model(xs.flip(-1) if flip else xs)
                y = y.flip(-1) if flip else y
                views.append(F.interpolate(y, size=(32, 48), mode="bilinear"))
        expected = torch.stack(views).mean(0)
        plain = task.model(x)
    assert got.shape == (1, 3, 32, 48)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-3)  # the option took effect
