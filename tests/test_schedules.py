"""``seglab.tasks.optim.build_optimizer``: warm-up, poly, cosine and constant learning rates step
by step against hand-computed values, SGD's settings and parameter groups, and its first step."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.utilities.parsing import AttributeDict
from torch import nn

from seglab.tasks import SegmentationTask
from seglab.tasks.optim import build_optimizer


def hparams(**kw) -> AttributeDict:
    base = {
        "optimizer": "sgd", "lr": 0.1, "weight_decay": 1e-4, "momentum": 0.9,
        "scheduler": "poly", "poly_power": 0.9, "warmup_epochs": 0.0,
    }  # fmt: skip
    return AttributeDict(base | kw)  # what a task's self.hparams is


def lr_curve(h: AttributeDict, total_steps: int, epochs: int) -> list[float]:
    model = nn.Linear(2, 2)
    cfg = build_optimizer(model.named_parameters(), h, total_steps, epochs)
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    assert cfg["lr_scheduler"]["interval"] == "step"
    lrs = []
    for _ in range(total_steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_poly_with_warmup():
    # 10 steps over 5 epochs, 1 warm-up epoch = 2 steps: 0.05, 0.1, then 0.1 (1 - (s-2)/8)^0.9
    got = lr_curve(hparams(warmup_epochs=1.0), total_steps=10, epochs=5)
    expected = [0.05, 0.1] + [0.1 * (1 - k / 8) ** 0.9 for k in range(8)]
    assert got == pytest.approx(expected, rel=1e-12)
    assert got[4] == pytest.approx(0.1 * 0.75**0.9)
    assert got[4] == pytest.approx(0.0771890, rel=1e-6)  # 0.75 ** 0.9 = 0.771890


def test_cosine_without_warmup():
    got = lr_curve(hparams(scheduler="cosine"), total_steps=8, epochs=2)
    expected = [0.05 * (1 + math.cos(math.pi * s / 8)) for s in range(8)]
    assert got == pytest.approx(expected, rel=1e-12)
    assert got[4] == pytest.approx(0.05)  # half-way: half the peak


def test_constant_after_warmup():
    got = lr_curve(hparams(scheduler="constant", warmup_epochs=1.0), total_steps=8, epochs=2)
    assert got == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.1, 0.1], rel=1e-12)


def test_sgd_settings_groups_and_first_step():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    h = hparams(scheduler="constant", weight_decay=0.01, momentum=0.5)
    opt = build_optimizer(model.named_parameters(), h, 10, 1)["optimizer"]
    assert type(opt) is torch.optim.SGD
    decay, no_decay = opt.param_groups
    assert decay["momentum"] == 0.5 and decay["nesterov"] is False
    assert [p.shape for p in decay["params"]] == [torch.Size([3, 2])]  # the weight matrix
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert len(no_decay["params"]) == 3  # linear bias, norm weight and bias
    w = model[0].weight
    before, grad = w.detach().clone(), torch.full_like(w, 0.2)
    w.grad = grad
    for p in no_decay["params"]:
        p.grad = torch.zeros_like(p)
    opt.step()
    # first SGD step: buffer = g + wd * w; w <- w - lr * buffer
    assert torch.allclose(w.detach(), before - 0.1 * (grad + 0.01 * before))


def test_the_task_uses_its_hyperparameters():
    task = SegmentationTask(
        model="unet", num_classes=2, model_kwargs={"base_channels": 4, "depth": 2},
        optimizer="sgd", lr=0.02, momentum=0.8, scheduler="cosine", warmup_epochs=1.0,
    )  # fmt: skip
    trainer = SimpleNamespace(estimated_stepping_batches=20, max_epochs=4)
    task.trainer = trainer  # type: ignore[assignment]
    cfg = task.configure_optimizers()
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    assert type(opt) is torch.optim.SGD and opt.param_groups[0]["momentum"] == 0.8
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    warm = [0.02 * (s + 1) / 5 for s in range(5)]
    cos = [0.01 * (1 + math.cos(math.pi * k / 15)) for k in range(15)]
    assert lrs == pytest.approx(warm + cos, rel=1e-12)
