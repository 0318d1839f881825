"""DenseASPP (Yang et al., 2018): densely connected atrous layers on a dilated DenseNet-161.

As in the official code (DeepMotionAIResearch/DenseASPP, ``models/DenseASPP.py``), the dilated
DenseNet-161 ends with a fourth transition (BN-ReLU, then a 1x1 conv halving 2208 channels to
1104) and a BatchNorm (``norm5``): timm's ``norm5`` (BN-ReLU on 2208 channels) is the
transition's BN-ReLU, :class:`Transition` adds the 1x1 conv, the BN and the ReLU that the first
atrous layer applies in place. Each atrous layer then sees the concatenation of that map and
every earlier layer's output and is pre-activation, BN-ReLU-conv: a 1x1 conv to ``d0 = 512``,
BN-ReLU, a dilated 3x3 conv to ``d1 = 128`` (rates 3, 6, 12, 18, 24 at output stride 8), dropout
0.1; the first layer skips its leading BN (it follows ``norm5``). The final concatenation
(``1104 + 5 * 128`` channels) goes through dropout and a 1x1 classifier.

The paper's DenseNet-161 at stride 8 drops the poolings of the last two transition layers
and dilates dense blocks 3 and 4 by 2 and 4; timm cannot build that, so
:mod:`seglab.models.dilation` does (any encoder is accepted).

Parameters at 19 classes (Cityscapes, the official setting), counted as the official code
splits them (its ``features`` against the atrous layers and classifier): trunk 28,911,840 =
timm's DenseNet-161 features (26,472,000) + the transition (2,439,840); head 6,483,587. The
first round (``transition=False, preactivation=False``) read the 2208-channel map directly
with conv-BN-ReLU layers: trunk 26.47M, head 9.26M.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seglab.models.blocks import ConvNormAct
from seglab.models.context_heads import (
    ATROUS_DEVIATION,
    ContextModel,
    context_encoder,
    make_aux_head,
    scale_rates,
)
from seglab.models.registry import Deviation, Fidelity, register


class Transition(nn.Sequential):
    """The official code's ``transition4`` conv and ``norm5``: 1x1 conv (no bias), BN, ReLU.

    The BN-ReLU before the conv is the encoder's own last norm (timm's ``norm5``).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(ConvNormAct(in_channels, out_channels, 1, bias=False))
        self.out_channels = out_channels


def _atrous_layer(
    in_channels: int, reduce: int, growth: int, rate: int, dropout: float, preact: bool, first: bool
) -> nn.Sequential:
    """One DenseASPP layer: pre-activation (official) or post-activation (first round)."""
    if not preact:
        return nn.Sequential(
            ConvNormAct(in_channels, reduce, 1),
            ConvNormAct(reduce, growth, 3, dilation=rate),
            nn.Dropout2d(dropout),
        )
    lead = [] if first else [nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True)]
    return nn.Sequential(
        *lead,
        nn.Conv2d(in_channels, reduce, 1),
        nn.BatchNorm2d(reduce),
        nn.ReLU(inplace=True),
        nn.Conv2d(reduce, growth, 3, padding=rate, dilation=rate),
        nn.Dropout2d(dropout),
    )


class DenseASPP(nn.Module):
    """Densely connected atrous layers.

    Args:
        in_channels: Channels ``C`` of the map the layers read.
        rates: Atrous rates, already scaled to the output stride.
        reduce_channels: Width ``d0`` of each layer's 1x1 bottleneck (512).
        growth: Width ``d1`` of each layer's dilated 3x3 output (128).
        dropout: Dropout2d after each layer.
        preactivation: BN-ReLU-conv layers, each new output concatenated in front (the
            official code); False: conv-BN-ReLU, appended (the first round).
    """

    def __init__(
        self,
        in_channels: int,
        rates: Sequence[int] = (3, 6, 12, 18, 24),
        reduce_channels: int = 512,
        growth: int = 128,
        dropout: float = 0.1,
        preactivation: bool = True,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            _atrous_layer(
                in_channels + i * growth, reduce_channels, growth, r, dropout, preactivation, i == 0
            )
            for i, r in enumerate(rates)
        )
        self.preactivation = preactivation
        self.rates = list(rates)
        self.out_channels = in_channels + len(rates) * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(B, C, h, w)`` to ``(B, C + len(rates) * growth, h, w)``."""
        feats = [x]
        for layer in self.layers:
            out = layer(torch.cat(feats, dim=1))
            if self.preactivation:
                feats.insert(0, out)
            else:
                feats.append(out)
        return torch.cat(feats, dim=1)


class DenseASPPHead(nn.Module):
    """Transition, DenseASPP, dropout, 1x1 classifier on the deepest map.

    Args:
        in_channels: Channels of the deepest map.
        num_classes: Output channels.
        rates: Atrous rates at the actual output stride.
        reduce_channels: ``d0``.
        growth: ``d1``.
        dropout: Dropout inside the layers and before the classifier.
        transition: Halve the deepest map's channels first (the official ``transition4``).
        preactivation: See :class:`DenseASPP`.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        rates: Sequence[int],
        reduce_channels: int = 512,
        growth: int = 128,
        dropout: float = 0.1,
        transition: bool = True,
        preactivation: bool = True,
    ) -> None:
        super().__init__()
        self.transition = Transition(in_channels, in_channels // 2) if transition else None
        width = in_channels // 2 if transition else in_channels
        self.aspp = DenseASPP(width, rates, reduce_channels, growth, dropout, preactivation)
        self.drop = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(self.aspp.out_channels, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Maps the feature list to scores at the encoder's output stride."""
        x = feats[-1] if self.transition is None else self.transition(feats[-1])
        return self.classifier(self.drop(self.aspp(x)))


FIDELITY = Fidelity(
    reference="Yang et al. 2018 (CVPR); official code DeepMotionAIResearch/DenseASPP, DenseASPP161",
    settings={"num_classes": 19},
    params=35_395_427,
    params_source="official DenseASPP161 at 19 classes, counted from its layer list",
    parts={
        "trunk": (("encoder.", "head.transition."), 28_911_840),
        "head": (("head.aspp.", "head.classifier."), 6_483_587),
    },
    deviations=(
        Deviation(
            "DenseNet-161 dilated by seglab's stride-to-dilation rule (same strides and rates "
            "as the official trunk)",
            "output_stride",
        ),
        Deviation(
            "first-round layout: no transition4, conv-BN-ReLU layers",
            "transition=False, preactivation=False",
            "kept to rebuild version-1 checkpoints",
        ),
        Deviation("PSPNet-style auxiliary head, off by default", "aux_head=True", "seglab's"),
        ATROUS_DEVIATION,
    ),
)


@register("denseaspp", legacy={1: {"transition": False, "preactivation": False}}, fidelity=FIDELITY)
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
    transition: bool = True,
    preactivation: bool = True,
    atrous_init: str = "centre",
) -> ContextModel:
    """DenseASPP; ``rates`` are given at stride 8 and rescaled to ``output_stride``.

    ``transition`` halves the deepest map's channels (official ``transition4``);
    ``preactivation`` selects the official BN-ReLU-conv layers; ``atrous_init``: see
    :class:`ContextModel`.
    """
    encoder = context_encoder(encoder_name, in_channels, output_stride, weights)
    head = DenseASPPHead(
        encoder.channels[-1],
        num_classes,
        scale_rates(rates, output_stride, 8),
        reduce_channels,
        growth,
        dropout,
        transition,
        preactivation,
    )
    aux = make_aux_head(aux_head, encoder, num_classes)
    return ContextModel(encoder, head, aux, atrous_init=atrous_init)
