"""The two sides of the quality benchmark: which model each library builds for a row, and one
plain-loop training step of a side on its own global-RNG stream.
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from benchmarks.gpu_step import sync
from benchmarks.isbi import rng_state, set_rng_state
from benchmarks.timing import logits_of

#: Row -> smp class, both libraries' defaults otherwise. ``pspnet_smp_budget`` is seglab's
#: ``pspnet`` (``MODEL``) at smp's default compute (ResNet up to layer2), a tenth of the paper's.
SMP_CLASSES = {
    "unet": "Unet",
    "unetplusplus": "UnetPlusPlus",
    "deeplabv3": "DeepLabV3",
    "deeplabv3plus": "DeepLabV3Plus",
    "pspnet": "PSPNet",
    "pspnet_smp_budget": "PSPNet",
    "pspnet_adaptive": "PSPNet",
    "pspnet_smp_budget_adaptive": "PSPNet",
}
#: Rows of seglab's PSPNet with ``pool_window=None``: bins that divide each input (mmseg's and
#: smp's adaptive pooling) instead of the default cells of the training crop's size. Each is
#: the row it names with that one option added.
ADAPTIVE = {"pspnet_adaptive": "pspnet", "pspnet_smp_budget_adaptive": "pspnet_smp_budget"}
MODEL = {"pspnet_smp_budget": "pspnet", **dict.fromkeys(ADAPTIVE, "pspnet")}
#: The plain loop trains the main output only: heads that need a loss of their own are off.
SEGLAB_KWARGS: dict[str, dict[str, Any]] = {
    "pspnet": {"aux_head": False},
    "pspnet_smp_budget": {"aux_head": False, "encoder_depth": 3, "channels": 128},
}
LOSS = {"ce": 1.0, "dice": 1.0}


def build(side: str, arch: str, args: argparse.Namespace, seed: int) -> nn.Module:
    """seglab's or smp's ``arch`` on ``args.encoder`` (random init, seeded), one logit."""
    torch.manual_seed(seed)
    if side == "seglab":
        from seglab.models import create_model

        options = seglab_options(args).get(arch, {})
        model = create_model(MODEL.get(arch, arch), 1, args.encoder, in_channels=1, **options)
    else:
        import segmentation_models_pytorch as smp

        cls = getattr(smp, SMP_CLASSES[arch])
        options = (getattr(args, "smp_options", None) or {}).get(arch, {})
        model = cls(args.encoder, encoder_weights=None, in_channels=1, classes=1, **options)
    return model.to(args.device)


def seglab_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """seglab's options per architecture: :data:`SEGLAB_KWARGS` (and :data:`ADAPTIVE`'s bins),
    then ``--seglab-options``."""
    extra = getattr(args, "seglab_options", None) or {}
    cells = {a: {**SEGLAB_KWARGS[b], "pool_window": None} for a, b in ADAPTIVE.items()}
    fixed = {**SEGLAB_KWARGS, **cells}
    return {a: {**fixed.get(a, {}), **extra.get(a, {})} for a in {*fixed, *extra}}


def hparams(args: argparse.Namespace) -> SimpleNamespace:
    """The optimiser and schedule settings, as the task's hyper-parameters name them."""
    fixed = {"optimizer": "adamw", "momentum": 0.9, "poly_power": 0.9, "warmup_epochs": 0.0}
    return SimpleNamespace(
        **fixed, lr=args.lr, weight_decay=args.weight_decay, scheduler=args.scheduler
    )


class Side:
    """One side's model, optimiser and schedule, trained step by step in the plain loop.

    The side draws its dropout from its own global-RNG stream, seeded with ``seed`` after the
    model is built, and puts the caller's stream back after each step: steps of several sides
    (or of a side and a Lightning run) can interleave without one changing another's draws.
    """

    def __init__(self, side: str, arch: str, args: argparse.Namespace, seed: int) -> None:
        from seglab.losses import SegLoss
        from seglab.tasks.optim import build_optimizer

        self.name, self.label, self.device = side, f"{side} {arch} seed {seed}", args.device
        self.loss_fn = SegLoss(LOSS, task="binary", num_classes=1).to(args.device)
        self.model = build(side, arch, args, seed)
        built = build_optimizer(self.model.named_parameters(), hparams(args), args.steps, 1)
        self.opt, self.sched = built["optimizer"], built["lr_scheduler"]["scheduler"]
        self.model.train()
        caller = rng_state()
        self.rng = rng_state(seed)
        set_rng_state(caller)

    def step(self, x: torch.Tensor, y: torch.Tensor, i: int) -> float:
        """One optimiser step on ``(x, y)`` (step ``i``, for errors); its seconds."""
        caller = rng_state()
        set_rng_state(self.rng)
        sync(self.device)
        start = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss, _ = self.loss_fn(logits_of(self.model(x)), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{self.label}: non-finite loss at step {i}")
        loss.backward()
        self.opt.step()
        self.sched.step()
        sync(self.device)
        seconds = time.perf_counter() - start
        self.rng = rng_state()
        set_rng_state(caller)
        return seconds
