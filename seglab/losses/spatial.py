"""Adapter for the loss terms that need the 2D layout (MS-SSIM, IoU of U-Net 3+).

Pixel and region terms see only the valid pixels, flattened; MS-SSIM needs neighbourhoods, so
these terms take the whole image with a ``valid`` map: ignored pixels are zeroed in both the
probabilities and the one-hot target, which gives them exactly zero gradient.
"""

from __future__ import annotations

import torch
from torch import nn

from seglab.losses.hybrid import iou_loss, ms_ssim_loss


class SpatialTerms(nn.Module):
    """Computes ``ms_ssim`` and ``iou`` terms for a task.

    Args:
        task: ``binary`` or ``multiclass``.
        term_kwargs: Per-term options, e.g. ``{"ms_ssim": {"window_size": 7}}``.
    """

    def __init__(self, task: str, term_kwargs: dict[str, dict] | None = None) -> None:
        super().__init__()
        if task not in ("binary", "multiclass"):
            raise ValueError(f"ms_ssim and iou terms support binary and multiclass, not {task!r}.")
        self.task, self.kwargs = task, term_kwargs or {}

    def forward(
        self, name: str, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """The term ``name`` on logits ``(B, C, H, W)``, targets ``(B, H, W)``, valid map."""
        fn = ms_ssim_loss if name == "ms_ssim" else iou_loss
        return fn(logits, target, mode=self.task, valid=valid, **self.kwargs.get(name, {}))
