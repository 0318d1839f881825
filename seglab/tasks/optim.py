"""Optimiser and learning-rate schedule of a task, built from its hyper-parameters."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch


def build_optimizer(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    h: Any,
    total_steps: int,
    epochs: int,
) -> dict[str, Any]:
    """AdamW or SGD with no weight decay on norms and biases, and a per-step schedule.

    Args:
        named_parameters: The task's ``named_parameters()``.
        h: The task's hyper-parameters (``optimizer``, ``lr``, ``weight_decay``, ``momentum``,
            ``scheduler``, ``poly_power``, ``warmup_epochs``).
        total_steps: Optimiser steps of the whole fit.
        epochs: Epochs of the whole fit (the warm-up is given in epochs).

    Returns:
        Lightning's ``{"optimizer", "lr_scheduler"}`` mapping; the schedule steps every batch:
        linear warm-up, then poly ``(1 - t) ** poly_power``, cosine or constant.
    """
    decay, no_decay = [], []
    for _, p in named_parameters:
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": h.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if h.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=h.lr, momentum=h.momentum, nesterov=False)
    else:
        opt = torch.optim.AdamW(groups, lr=h.lr)
    warmup = int(h.warmup_epochs * total_steps / epochs)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if h.scheduler == "poly":
            return (1 - t) ** h.poly_power
        if h.scheduler == "cosine":
            return 0.5 * (1 + math.cos(math.pi * t))
        return 1.0

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
