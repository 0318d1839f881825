"""Atrous spatial pyramid pooling: DeepLab v2's summed ASPP-L and v3/v3+'s concatenated ASPP."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seglab.models.blocks import ConvNormAct, SeparableConv, pooled_conv, resize_to
from seglab.models.context_heads import POOL_NORM_FIX, check_batch_statistics


class ImagePooling(nn.Module):
    """Image-level features: global average pool, 1x1 conv, norm, ReLU, bilinear up-sampling.

    BatchNorm by default, as in the paper, torchvision and smp: it needs a training batch of at
    least 2 (one value per channel otherwise), and a batch of 1 gets a clear error naming the
    fix. ``norm=None`` (the first round) or ``"gn"`` trains at batch 1.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        norm: ``"bn"`` (default), ``"gn"`` or None.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: str | None = "bn") -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = pooled_conv(in_channels, out_channels, norm)
        self.batch_norm = norm in ("bn", "batchnorm")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(B, in, h, w)`` to ``(B, out, h, w)``, constant over space."""
        pooled = self.pool(x)
        if self.training and self.batch_norm:
            check_batch_statistics(pooled, "image pooling", POOL_NORM_FIX)
        return resize_to(self.conv(pooled), x)


class ASPP(nn.Module):
    """DeepLab v3 ASPP: 1x1 branch, atrous 3x3 branches, image pooling; concat, 1x1 projection.

    Args:
        in_channels: Channels of the deepest encoder map.
        out_channels: Width of every branch and of the projection (256).
        rates: Atrous rates of the 3x3 branches, already scaled to the output stride.
        image_pooling: Whether to add the image-level branch.
        separable: Depthwise-separable 3x3 branches (DeepLab v3+).
        norm: Normalisation of the branches and the projection.
        dropout: Dropout after the projection.
        pool_norm: Normalisation of the image-level branch (see :class:`ImagePooling`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        rates: Sequence[int] = (6, 12, 18),
        image_pooling: bool = True,
        separable: bool = False,
        norm: str | None = "bn",
        dropout: float = 0.1,
        pool_norm: str | None = "bn",
    ) -> None:
        super().__init__()
        atrous = SeparableConv if separable else ConvNormAct
        branches: list[nn.Module] = [ConvNormAct(in_channels, out_channels, 1, norm=norm)]
        branches += [atrous(in_channels, out_channels, 3, dilation=r, norm=norm) for r in rates]
        if image_pooling:
            branches.append(ImagePooling(in_channels, out_channels, pool_norm))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(
            ConvNormAct(len(branches) * out_channels, out_channels, 1, norm=norm),
            nn.Dropout(dropout),
        )
        self.rates = list(rates)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(B, in, h, w)`` to ``(B, out_channels, h, w)``."""
        return self.project(torch.cat([branch(x) for branch in self.branches], dim=1))


class ASPPSum(nn.Module):
    """DeepLab v2 ASPP-L: one atrous 3x3 conv to class scores per rate, the scores summed.

    Args:
        in_channels: Channels of the deepest encoder map.
        num_classes: Output channels of every branch.
        rates: Atrous rates, already scaled to the output stride ((6, 12, 18, 24) at stride 8).
    """

    def __init__(
        self, in_channels: int, num_classes: int, rates: Sequence[int] = (6, 12, 18, 24)
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            ConvNormAct(in_channels, num_classes, 3, dilation=r, norm=None, act=None) for r in rates
        )
        for branch in self.branches:
            nn.init.normal_(branch[0].weight, std=0.01)
            nn.init.zeros_(branch[0].bias)
        self.rates = list(rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(B, in, h, w)`` to summed scores ``(B, num_classes, h, w)``."""
        return torch.stack([branch(x) for branch in self.branches]).sum(dim=0)


def atrous_rates(module: nn.Module) -> list[int]:
    """Dilations of the 3x3 convolutions of a module, in order (for tests and summaries)."""
    return [
        m.dilation[0]
        for m in module.modules()
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
    ]
