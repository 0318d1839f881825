"""PSPNet (Zhao et al., 2017): pyramid pooling on a dilated ResNet, with an auxiliary head.

The deepest map (``C`` channels, stride 8) is average-pooled to ``bin x bin`` grids (1, 2, 3, 6),
each reduced to ``C / len(bins)`` by a 1x1 conv, up-sampled and concatenated with the map; a 3x3
conv (512), dropout and a 1x1 classifier follow. The auxiliary head (3x3 conv 256, BN, ReLU,
dropout, 1x1) supervises the stage before the last (ResNet's layer3); the task weighs its loss
(0.4 in the paper). The 1x1 bin has no BatchNorm, so a batch of one trains.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seglab.models.blocks import ConvNormAct, resize_to
from seglab.models.context_heads import ContextModel, context_encoder, make_aux_head
from seglab.models.registry import register


def _bin_norm(bin_size: int, norm: str | None) -> str | None:
    """No batch statistics over a ``1 x 1`` map (one value per channel at batch size 1)."""
    return None if bin_size == 1 and norm in ("bn", "batchnorm") else norm


class PyramidPooling(nn.Module):
    """Pyramid pooling module: per bin, adaptive average pool -> 1x1 conv -> norm -> ReLU.

    Args:
        in_channels: Input channels ``C``.
        bins: Grid sizes.
        channels: Width of each bin branch; ``C // len(bins)`` by default.
        norm: Normalisation of the branches; the ``1 x 1`` bin never takes BatchNorm.
    """

    def __init__(
        self,
        in_channels: int,
        bins: Sequence[int] = (1, 2, 3, 6),
        channels: int | None = None,
        norm: str | None = "bn",
    ) -> None:
        super().__init__()
        width = channels or in_channels // len(bins)
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(b),
                ConvNormAct(in_channels, width, 1, norm=_bin_norm(b, norm)),
            )
            for b in bins
        )
        self.out_channels = in_channels + len(bins) * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(B, C, h, w)`` to ``(B, out_channels, h, w)``."""
        return torch.cat([x, *(resize_to(branch(x), x) for branch in self.branches)], dim=1)


class PSPHead(nn.Module):
    """Pyramid pooling, 3x3 conv-BN-ReLU, dropout, 1x1 classifier on the deepest map.

    Args:
        in_channels: Channels of the deepest map.
        num_classes: Output channels.
        bins: Pyramid grid sizes.
        channels: Width of the 3x3 conv (512).
        dropout: Dropout2d probability before the classifier.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        bins: Sequence[int] = (1, 2, 3, 6),
        channels: int = 512,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.ppm = PyramidPooling(in_channels, bins)
        self.block = ConvNormAct(self.ppm.out_channels, channels, 3)
        self.drop = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Maps the feature list to scores at the encoder's output stride."""
        return self.classifier(self.drop(self.block(self.ppm(feats[-1]))))


@register("pspnet")
def build_pspnet(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "resnet50",
    weights: str | None = None,
    output_stride: int = 8,
    bins: Sequence[int] = (1, 2, 3, 6),
    channels: int = 512,
    dropout: float = 0.1,
    aux_head: bool = True,
) -> ContextModel:
    """PSPNet on a dilated encoder; ``aux_head`` supervises the stage before the last."""
    encoder = context_encoder(encoder_name, in_channels, output_stride, weights)
    head = PSPHead(encoder.channels[-1], num_classes, bins, channels, dropout)
    return ContextModel(encoder, head, make_aux_head(aux_head, encoder, num_classes))
