"""DeepLab v2 (Chen et al., 2017), v3 (Chen et al., 2017) and v3+ (Chen et al., 2018).

* v2: dilated ResNet-101 at output stride 8, ASPP-L (four atrous 3x3 convs to class scores at
  rates 6, 12, 18, 24, summed). The multi-scale input fusion (MSC) and the CRF are left out.
* v3: ASPP with a 1x1 branch, three atrous 3x3 branches (6, 12, 18 at stride 16) and image
  pooling, concatenated and projected to 256; multi-grid (1, 2, 4) in ResNet's last stage.
* v3+: the v3 ASPP with depthwise-separable branches, and a decoder: the stride-4 feature
  projected to 48 channels, concatenated with the up-sampled ASPP output, two separable 3x3
  convs (256) and a 1x1 classifier; Xception-65 by default.

Atrous rates are given at the paper's reference stride (8 for v2, 16 for v3/v3+) and rescaled
to ``output_stride`` (``rate * reference / output_stride``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seglab.models.aspp import ASPP, ASPPSum
from seglab.models.blocks import ConvNormAct, SeparableConv, resize_to
from seglab.models.context_heads import (
    ContextModel,
    apply_multi_grid,
    context_encoder,
    level_with_reduction,
    make_aux_head,
    scale_rates,
)
from seglab.models.deeplab_fidelity import FIDELITY_V2, FIDELITY_V3, FIDELITY_V3PLUS
from seglab.models.registry import register


class DeepLabV2Head(nn.Module):
    """ASPP-L on the deepest map: summed per-rate class scores."""

    def __init__(self, in_channels: int, num_classes: int, rates: Sequence[int]) -> None:
        super().__init__()
        self.aspp = ASPPSum(in_channels, num_classes, rates)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Maps the feature list to scores at the encoder's output stride."""
        return self.aspp(feats[-1])


class DeepLabV3Head(nn.Module):
    """ASPP on the deepest map, then a 1x1 classifier.

    Args:
        in_channels: Channels of the deepest map.
        num_classes: Output channels.
        rates: Atrous rates at the actual output stride.
        channels: ASPP width.
        image_pooling: Whether ASPP has the image-level branch.
        separable: Depthwise-separable atrous branches.
        dropout: Dropout after the ASPP projection.
        pool_norm: Normalisation of the image-pooling branch (``"bn"``, ``"gn"`` or None).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        rates: Sequence[int],
        channels: int = 256,
        image_pooling: bool = True,
        separable: bool = False,
        dropout: float = 0.1,
        pool_norm: str | None = "bn",
    ) -> None:
        super().__init__()
        self.aspp = ASPP(
            in_channels,
            channels,
            rates,
            image_pooling,
            separable,
            dropout=dropout,
            pool_norm=pool_norm,
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Maps the feature list to scores at the encoder's output stride."""
        return self.classifier(self.aspp(feats[-1]))


class DeepLabV3PlusHead(nn.Module):
    """Separable ASPP plus the v3+ decoder on the stride-4 level.

    Args:
        encoder_channels: ``encoder.channels``.
        low_level: Index of the low-level feature (the level at reduction 4).
        num_classes: Output channels.
        rates: Atrous rates at the actual output stride.
        channels: ASPP and decoder width (256).
        low_level_channels: Width of the projected low-level feature (48).
        image_pooling: Whether ASPP has the image-level branch.
        pool_norm: Normalisation of the image-pooling branch (``"bn"``, ``"gn"`` or None).
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        low_level: int,
        num_classes: int,
        rates: Sequence[int],
        channels: int = 256,
        low_level_channels: int = 48,
        image_pooling: bool = True,
        pool_norm: str | None = "bn",
    ) -> None:
        super().__init__()
        self.low_level = low_level
        self.aspp = ASPP(
            encoder_channels[-1],
            channels,
            rates,
            image_pooling,
            separable=True,
            pool_norm=pool_norm,
        )
        self.project = ConvNormAct(encoder_channels[low_level], low_level_channels, 1)
        self.fuse = nn.Sequential(
            SeparableConv(channels + low_level_channels, channels),
            SeparableConv(channels, channels),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Maps the feature list to scores at the low-level stride (4)."""
        low = self.project(feats[self.low_level])
        x = resize_to(self.aspp(feats[-1]), low)
        return self.classifier(self.fuse(torch.cat([x, low], dim=1)))


#: The first round had no norm in the image-pooling branch (a conv with bias instead).
POOL_LEGACY = {1: {"pool_norm": None}}
#: DeepLab v3 defaulted to output stride 16 (the paper's training stride) up to version 2.
V3_LEGACY = {**POOL_LEGACY, 2: {"output_stride": 16}}


@register("deeplabv2", fidelity=FIDELITY_V2)
def build_deeplabv2(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "resnet101",
    weights: str | None = None,
    output_stride: int = 8,
    aspp_rates: Sequence[int] = (6, 12, 18, 24),
    atrous_init: str = "centre",
) -> ContextModel:
    """DeepLab v2 (ASPP-L); ``aspp_rates`` are given at stride 8; ``atrous_init``: see
    :class:`ContextModel`."""
    encoder = context_encoder(encoder_name, in_channels, output_stride, weights)
    rates = scale_rates(aspp_rates, output_stride, 8)
    head = DeepLabV2Head(encoder.channels[-1], num_classes, rates)
    return ContextModel(encoder, head, atrous_init=atrous_init)


@register("deeplabv3", legacy=V3_LEGACY, fidelity=FIDELITY_V3)
def build_deeplabv3(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "resnet101",
    weights: str | None = None,
    output_stride: int = 8,
    aspp_rates: Sequence[int] = (6, 12, 18),
    image_pooling: bool = True,
    multi_grid: Sequence[int] | str | None = "auto",
    channels: int = 256,
    dropout: float = 0.1,
    aux_head: bool = False,
    pool_norm: str | None = "bn",
    atrous_init: str = "centre",
) -> ContextModel:
    """DeepLab v3; ``aspp_rates`` are given at stride 16; ``atrous_init``: see
    :class:`ContextModel`.

    ``output_stride`` 8 (the paper's evaluation stride, torchvision's, mmsegmentation's and
    smp's): on ISBI membranes at stride 16, the paper's training stride, the head's 16x
    up-sampled scores lost to smp (``benchmarks/RESULTS.md``); ``output_stride=16`` trains the
    paper's way at a quarter of the head's cost.

    ``multi_grid``: unit rates of ResNet's last stage (``(1, 2, 4)`` in the paper); ``"auto"``
    applies ``(1, 2, 4)`` on ResNets and nothing on other encoders, an explicit grid on an
    encoder without ResNet stages raises, None keeps timm's dilation. ``pool_norm`` normalises
    the image-pooling branch (BatchNorm, the paper's; None or ``"gn"`` train at batch 1).
    ``aux_head`` adds a PSPNet-style head on the stage before the last.
    """
    encoder = context_encoder(encoder_name, in_channels, output_stride, weights)
    if multi_grid == "auto":
        apply_multi_grid(encoder, (1, 2, 4))
    elif isinstance(multi_grid, str):
        raise ValueError(f"multi_grid must be 'auto', None or unit rates, got {multi_grid!r}.")
    elif multi_grid and not apply_multi_grid(encoder, multi_grid):
        raise ValueError(
            f"multi_grid={list(multi_grid)} needs a ResNet-family encoder (blocks in "
            f"model.layer4); {encoder_name!r} has none. Use multi_grid: null or 'auto', or a "
            "ResNet encoder (resnet50, resnet101, ...)."
        )
    rates = scale_rates(aspp_rates, output_stride, 16)
    head = DeepLabV3Head(
        encoder.channels[-1],
        num_classes,
        rates,
        channels,
        image_pooling,
        dropout=dropout,
        pool_norm=pool_norm,
    )
    aux = make_aux_head(aux_head, encoder, num_classes)
    return ContextModel(encoder, head, aux, atrous_init=atrous_init)


@register("deeplabv3plus", legacy=POOL_LEGACY, fidelity=FIDELITY_V3PLUS)
def build_deeplabv3plus(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "xception65",
    weights: str | None = None,
    output_stride: int = 16,
    aspp_rates: Sequence[int] = (6, 12, 18),
    image_pooling: bool = True,
    channels: int = 256,
    low_level_channels: int = 48,
    aux_head: bool = False,
    pool_norm: str | None = "bn",
    atrous_init: str = "centre",
) -> ContextModel:
    """DeepLab v3+; the decoder reads the deepest encoder level at reduction <= 4.

    ``pool_norm`` normalises the image-pooling branch (see :func:`build_deeplabv3`).
    """
    encoder = context_encoder(encoder_name, in_channels, output_stride, weights)
    rates = scale_rates(aspp_rates, output_stride, 16)
    head = DeepLabV3PlusHead(
        encoder.channels,
        level_with_reduction(encoder, 4),
        num_classes,
        rates,
        channels,
        low_level_channels,
        image_pooling,
        pool_norm,
    )
    aux = make_aux_head(aux_head, encoder, num_classes)
    return ContextModel(encoder, head, aux, atrous_init=atrous_init)
