"""Mobile U-Net: a MobileNetV2 encoder and a decoder of inverted-residual blocks.

Each decoder level up-samples (bilinear + 1x1 by default), concatenates the skip and applies
two inverted residuals (Sandler et al., 2018): 1x1 expansion, 3x3 depthwise, linear 1x1
projection, with the identity added when input and output shapes match (always in the second
block). :class:`InvertedResidual` also takes a squeeze-excitation ratio and an activation, which
is all that separates it from EfficientNet's MBConv (see ``effunet``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seglab.models.blocks import ConvNormAct, make_act
from seglab.models.encoders import create_encoder
from seglab.models.registry import register
from seglab.models.unet import BlockFactory, UNet, timm_decoder_channels


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global average, bottleneck MLP (1x1 convs), sigmoid gate.

    Args:
        channels: Channels gated.
        reduced: Bottleneck channels.
        act: Bottleneck activation.
    """

    def __init__(self, channels: int, reduced: int, act: str | None = "silu") -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, reduced, 1),
            make_act(act),
            nn.Conv2d(reduced, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rescales each channel of ``x`` by a learned gate in (0, 1)."""
        return x * self.gate(x)


class InvertedResidual(nn.Module):
    """Expand 1x1 -> depthwise kxk -> (SE) -> project 1x1 (linear), residual if shapes match.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        expand_ratio: Hidden width as a multiple of ``in_channels`` (6 in MobileNetV2).
        kernel_size: Depthwise kernel size.
        act: Activation after expansion and depthwise conv (``relu6``; ``silu`` for MBConv).
        se_ratio: Squeeze-excitation bottleneck as a fraction of ``in_channels`` (0: no SE).
        norm: Normalisation name.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: int = 6,
        kernel_size: int = 3,
        act: str | None = "relu6",
        se_ratio: float = 0.0,
        norm: str | None = "bn",
    ) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(in_channels, hidden, 1, norm=norm, act=act))
        layers.append(ConvNormAct(hidden, hidden, kernel_size, groups=hidden, norm=norm, act=act))
        if se_ratio > 0:
            layers.append(SqueezeExcite(hidden, max(1, int(in_channels * se_ratio)), act))
        layers.append(ConvNormAct(hidden, out_channels, 1, norm=norm, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = in_channels == out_channels
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(B, in, H, W)`` to ``(B, out, H, W)``."""
        out = self.block(x)
        return out + x if self.residual else out


def inverted_residual_block(
    expand_ratio: int = 6,
    act: str | None = "relu6",
    se_ratio: float = 0.0,
    norm: str | None = "bn",
) -> BlockFactory:
    """Level-block factory: two inverted residuals, ``in -> out`` then ``out -> out``."""

    def make(i: int, o: int) -> nn.Module:
        return nn.Sequential(
            InvertedResidual(i, o, expand_ratio, act=act, se_ratio=se_ratio, norm=norm),
            InvertedResidual(o, o, expand_ratio, act=act, se_ratio=se_ratio, norm=norm),
        )

    return make


def inverted_unet(
    num_classes: int,
    in_channels: int,
    encoder_name: str,
    weights: str | None,
    output_stride: int,
    base_channels: int,
    depth: int,
    decoder_channels: Sequence[int] | None,
    upsample: str,
    block: BlockFactory,
) -> UNet:
    """A U-Net whose decoder (and plain encoder, for ``"unet"``) levels are ``block``."""
    if encoder_name == "unet":
        enc = create_encoder(
            "unet",
            in_channels,
            weights=weights,
            base_channels=base_channels,
            depth=depth,
            block=block,
        )
    else:
        enc = create_encoder(encoder_name, in_channels, output_stride, weights)
        decoder_channels = decoder_channels or timm_decoder_channels(enc)
    return UNet(enc, num_classes, decoder_channels, block, upsample)


@register("mobileunet")
def build_mobileunet(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "mobilenetv2_100",
    weights: str | None = None,
    output_stride: int = 32,
    base_channels: int = 32,
    depth: int = 5,
    decoder_channels: Sequence[int] | None = None,
    expand_ratio: int = 6,
    upsample: str = "bilinear",
    norm: str | None = "bn",
) -> UNet:
    """Builds a Mobile U-Net.

    Args:
        num_classes: Logit channels.
        in_channels: Input image channels.
        encoder_name: A timm name (``mobilenetv2_100``, ``mobilenetv2_050``, ...) or ``"unet"``
            for a plain encoder made of the same inverted-residual blocks.
        weights: Encoder weights (see ``create_encoder``).
        output_stride: Deepest stride of a timm encoder.
        base_channels: First-level width of the plain encoder.
        depth: Plain-encoder levels.
        decoder_channels: Decoder widths, deep to shallow; default 128-64-32-16 for timm.
        expand_ratio: Inverted-residual expansion.
        upsample: ``"bilinear"`` or ``"transpose"``.
        norm: Normalisation name.
    """
    block = inverted_residual_block(expand_ratio, "relu6", 0.0, norm)
    return inverted_unet(
        num_classes,
        in_channels,
        encoder_name,
        weights,
        output_stride,
        base_channels,
        depth,
        decoder_channels,
        upsample,
        block,
    )
