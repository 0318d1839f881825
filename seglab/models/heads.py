"""Output heads shared by the U-Net family: a segmentation head and U-Net 3+'s CGM.

The classification-guided module (CGM, Huang et al. 2020) predicts from the deepest encoder
features whether the image contains any foreground. It returns *logits* ``(B, 1)``; the
sigmoid belongs to the loss (BCE with logits). Its hard decision gates the segmentation
(:func:`cgm_gate`): at inference always, and in training too in the paper's mode
(``unet3plus`` ``cgm="paper"``).
"""

from __future__ import annotations

import torch
from torch import nn

from seglab.models.blocks import resize_to

#: Logit given to suppressed foreground; representable in float16 and bfloat16.
SUPPRESSED_LOGIT = -1e4


class SegmentationHead(nn.Module):
    """Optional dropout, a ``k x k`` convolution to class logits, optional resize.

    Args:
        in_channels: Feature channels.
        num_classes: Logit channels.
        kernel_size: 1 (U-Net) or 3 (U-Net 3+).
        dropout: Dropout probability before the convolution (0 disables it).
    """

    def __init__(
        self, in_channels: int, num_classes: int, kernel_size: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv = nn.Conv2d(in_channels, num_classes, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        """Maps ``(B, in, h, w)`` to logits, resized to ``ref``'s spatial size when given."""
        out = self.conv(self.dropout(x))
        return out if ref is None else resize_to(out, ref)


class ClassificationGuidedModule(nn.Module):
    """U-Net 3+'s CGM: Dropout(0.5) -> 1x1 conv -> global max-pool -> one logit per image.

    The paper's two-channel softmax is replaced by its one-logit equivalent, trained with
    BCE-with-logits against "the mask has foreground".

    Args:
        in_channels: Channels of the bottleneck features.
        dropout: Dropout probability (0.5 in the paper).
    """

    def __init__(self, in_channels: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.conv = nn.Conv2d(in_channels, 1, 1)
        self.pool = nn.AdaptiveMaxPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps bottleneck features ``(B, C, h, w)`` to "has foreground" logits ``(B, 1)``."""
        return self.pool(self.conv(self.dropout(x))).flatten(1)


def cgm_gate(
    logits: torch.Tensor, cls_logits: torch.Tensor, fill: float = SUPPRESSED_LOGIT
) -> torch.Tensor:
    """Suppresses the foreground of images the CGM classifies as empty.

    An image is empty where ``sigmoid(cls_logits) <= 0.5``, i.e. ``cls_logits <= 0``. There,
    with one logit channel every logit becomes ``fill``; with several channels the foreground
    channels ``1..C-1`` become ``fill`` so that background (channel 0) wins the argmax: the
    paper's "segmentation multiplied by the decision", in probability. The decision has no
    gradient and a suppressed logit none either; kept images pass through unchanged, gradients
    included, so the gate can sit in the training graph (the paper's mode).

    Args:
        logits: Segmentation logits ``(B, C, H, W)``.
        cls_logits: CGM logits ``(B, 1)``.
        fill: Logit written into suppressed foreground.

    Returns:
        Gated logits, same shape and dtype as ``logits``.
    """
    keep = (cls_logits > 0).reshape(-1, 1, 1, 1)
    fill_t = logits.new_tensor(fill)
    if logits.shape[1] == 1:
        return torch.where(keep, logits, fill_t)
    fg = torch.where(keep, logits[:, 1:], fill_t)
    return torch.cat([logits[:, :1], fg], dim=1)
