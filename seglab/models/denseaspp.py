"""DenseASPP (Yang et al., 2018): densely connected atrous layers on a dilated DenseNet-161.

Each atrous layer sees the concatenation of the encoder map and every earlier layer's output;
it reduces that to ``d0 = 512`` channels with a 1x1 conv and produces ``d1 = 128`` with a
dilated 3x3 conv (rates 3, 6, 12, 18, 24 at output stride 8), so the last layer covers a
receptive field of 128 pixels of the stride-8 map with dense scale sampling. The final
concatenation (``C + 5 * d1`` channels) goes through dropout and a 1x1 classifier.

The paper's DenseNet-161 at stride 8 drops the poolings of the last two transition layers
and dilates dense blocks 3 and 4 by 2 and 4; timm cannot build that, so
:mod:`seglab.models.dilation` does (any encoder is accepted). Layers here are post-activation
(conv-BN-ReLU, seglab's one block) where the paper's are BN-ReLU-conv; widths are the paper's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seglab.models.blocks import ConvNormAct
from seglab.models.context_heads import ContextModel, context_encoder, make_aux_head, scale_rates
from seglab.models.registry import register


class DenseASPP(nn.Module):
    """Densely connected atrous layers.

    Args:
        in_channels: Channels ``C`` of the deepest encoder map.
        rates: Atrous rates, already scaled to the output stride.
        reduce_channels: Width ``d0`` of each layer's 1x1 bottleneck (512).
        growth: Width ``d1`` of each layer's dilated 3x3 output (128).
        dropout: Dropout2d after each layer.
    """

    def __init__(
        self,
        in_channels: int,
        rates: Sequence[int] = (3, 6, 12, 18, 24),
        reduce_channels: int = 512,
        growth: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(
                ConvNormAct(in_channels + i * growth, reduce_channels, 1),
                ConvNormAct(reduce_channels, growth, 3, dilation=r),
                nn.Dropout2d(dropout),
            )
            for i, r in enumerate(rates)
        )
        self.rates = list(rates)
        self.out_channels = in_channels + len(rates) * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(B, C, h, w)`` to ``(B, C + len(rates) * growth, h, w)``."""
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, dim=1)))
        return torch.cat(feats, dim=1)


class DenseASPPHead(nn.Module):
    """DenseASPP, dropout, 1x1 classifier on the deepest map.

    Args:
        in_channels: Channels of the deepest map.
        num_classes: Output channels.
        rates: Atrous rates at the actual output stride.
        reduce_channels: ``d0``.
        growth: ``d1``.
        dropout: Dropout inside the layers and before the classifier.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        rates: Sequence[int],
        reduce_channels: int = 512,
        growth: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.aspp = DenseASPP(in_channels, rates, reduce_channels, growth, dropout)
        self.drop = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(self.aspp.out_channels, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Maps the feature list to scores at the encoder's output stride."""
        return self.classifier(self.drop(self.aspp(feats[-1])))


@register("denseaspp")
def build_denseaspp(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "densenet161",
    weights: str | None = None,
    output_stride: int = 8,
    rates: Sequence[int] = (3, 6, 12, 18, 24),
    reduce_channels: int = 512,
    growth: int = 128,
    dropout: float = 0.1,
    aux_head: bool = False,
) -> ContextModel:
    """DenseASPP; ``rates`` are given at stride 8 and rescaled to ``output_stride``."""
    encoder = context_encoder(encoder_name, in_channels, output_stride, weights)
    head = DenseASPPHead(
        encoder.channels[-1],
        num_classes,
        scale_rates(rates, output_stride, 8),
        reduce_channels,
        growth,
        dropout,
    )
    return ContextModel(encoder, head, make_aux_head(aux_head, encoder, num_classes))
