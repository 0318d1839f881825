"""What a model returns in train mode when it has more than one head."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class ModelOutput:
    """Outputs of a model with extra heads, in train mode.

    In eval mode every seglab model returns only the logits tensor, so export, TTA and predict
    never unpack anything. The task, not the model, turns these into a loss.

    Attributes:
        logits: Main logits ``(B, C, H, W)`` at input resolution.
        side: Deep-supervision side outputs, each ``(B, C, H, W)`` at input resolution.
        aux: Auxiliary-head logits ``(B, C, H, W)`` (PSPNet-style), or None.
        cls: Image-level classification logits ``(B, 1)`` (U-Net 3+ CGM), or None.
    """

    logits: torch.Tensor
    side: list[torch.Tensor] = field(default_factory=list)
    aux: torch.Tensor | None = None
    cls: torch.Tensor | None = None


def main_logits(output: torch.Tensor | ModelOutput) -> torch.Tensor:
    """The main logits of either output form."""
    return output.logits if isinstance(output, ModelOutput) else output


@contextmanager
def all_heads(model: nn.Module) -> Iterator[None]:
    """Makes an eval-mode model return its ``ModelOutput`` (side outputs included).

    Only the top-level ``training`` flag is raised, which is what seglab models read to choose
    their return form; every layer below (BatchNorm, Dropout) stays in eval mode, so the side
    outputs are exactly what the heads produce at inference.
    """
    was = model.training
    model.training = True
    try:
        yield
    finally:
        model.training = was
