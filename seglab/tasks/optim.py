"""Optimiser and learning-rate schedule of a task, built from its hyper-parameters.

Parameters fall into up to four named groups: ``encoder`` / ``decoder`` (everything that is not
``model.encoder``), each split into a decayed group and a ``*_no_decay`` group (norms and
biases, weight decay 0). The encoder groups run at ``lr * encoder_lr_mult`` and at learning rate
0 for the first ``freeze_encoder_epochs`` (the fine-tuning callback also stops their gradients).
Lightning's ``LearningRateMonitor`` logs each group under its name (``lr-AdamW/encoder``, ...),
so every one of these controls shows in ``metrics.csv``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

ENCODER_PREFIX = "model.encoder."


def param_groups(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    lr: float,
    weight_decay: float,
    encoder_lr_mult: float = 1.0,
) -> list[dict[str, Any]]:
    """Named parameter groups: encoder/decoder x decay/no-decay, empty groups left out."""
    groups: dict[str, dict[str, Any]] = {}
    for name, p in named_parameters:
        if not p.requires_grad:
            continue
        part = "encoder" if name.startswith(ENCODER_PREFIX) else "decoder"
        key = part if p.ndim > 1 else f"{part}_no_decay"
        if key not in groups:
            mult = encoder_lr_mult if part == "encoder" else 1.0
            wd = weight_decay if p.ndim > 1 else 0.0
            groups[key] = {"name": key, "params": [], "lr": lr * mult, "weight_decay": wd}
        groups[key]["params"].append(p)
    order = ("encoder", "encoder_no_decay", "decoder", "decoder_no_decay")
    return [groups[k] for k in order if k in groups]


def schedule(h: Any, total_steps: int, epochs: int) -> Callable[[int], float]:
    """Step -> learning-rate factor: linear warm-up, then poly, cosine or constant."""
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

    return factor


def build_optimizer(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    h: Any,
    total_steps: int,
    epochs: int,
) -> dict[str, Any]:
    """AdamW or SGD over :func:`param_groups`, with a per-step schedule.

    Args:
        named_parameters: The task's ``named_parameters()``.
        h: The task's hyper-parameters (``optimizer``, ``lr``, ``weight_decay``, ``momentum``,
            ``scheduler``, ``poly_power``, ``warmup_epochs``, ``encoder_lr_mult``,
            ``freeze_encoder_epochs``).
        total_steps: Optimiser steps of the whole fit.
        epochs: Epochs of the whole fit (the warm-up and the freeze are given in epochs).

    Returns:
        Lightning's ``{"optimizer", "lr_scheduler"}`` mapping; the schedule steps every batch.
    """
    groups = param_groups(
        named_parameters, h.lr, h.weight_decay, float(getattr(h, "encoder_lr_mult", 1.0))
    )
    if h.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=h.lr, momentum=h.momentum, nesterov=False)
    else:
        opt = torch.optim.AdamW(groups, lr=h.lr)
    factor = schedule(h, total_steps, epochs)
    frozen = int(float(getattr(h, "freeze_encoder_epochs", 0)) * total_steps / epochs)

    def encoder_factor(step: int) -> float:
        return 0.0 if step < frozen else factor(step)

    lambdas = [encoder_factor if g["name"].startswith("encoder") else factor for g in groups]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambdas)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
