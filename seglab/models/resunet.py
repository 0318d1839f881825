"""Residual U-Net (Zhang, Liu & Wang, 2018, "Road Extraction by Deep Residual U-Net").

Every level block, in the encoder and in the decoder, is a pre-activation residual unit
(He et al., 2016, identity mappings): ``BN-ReLU-conv3x3-BN-ReLU-conv3x3`` plus a shortcut that
is the identity, or a 1x1 conv + BN where the channel count changes. The first encoder unit
starts with its convolution (the paper's stem: no BN-ReLU on the raw image).

Differences from the paper, by design of the shared U-Net skeleton: the plain encoder halves
the resolution with 2x2 max-pooling between levels (the paper uses stride-2 convolutions), and
bilinear up-sampling is followed by a 1x1 conv to the level width. With the defaults
(``base_channels=64``, ``depth=4``: three encoder levels, a bridge, three decoder levels) the
network is the paper's 7-level ResUNet: 7.53M parameters for 3 input channels and 1 class
(the paper reports 7.8M). Timm encoders work too (``resnet18``, ``resnet34``, ...); then only
the decoder is residual.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from seglab.models.blocks import ConvNormAct, make_act, make_norm
from seglab.models.family_encoder import family_encoder
from seglab.models.registry import Deviation, Fidelity, register
from seglab.models.unet import HALF_RESOLUTION_LEGACY, BlockFactory, UNet, timm_decoder_channels


class ResidualUnit(nn.Module):
    """Pre-activation residual unit with a projection shortcut when shapes differ.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        norm: Normalisation name.
        act: Activation name.
        stem: Leave out the leading norm-activation (first unit on the raw image).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm: str | None = "bn",
        act: str | None = "relu",
        stem: bool = False,
    ) -> None:
        super().__init__()
        pre = [] if stem else [make_norm(norm, in_channels), make_act(act)]
        self.body = nn.Sequential(
            *pre,
            ConvNormAct(in_channels, out_channels, 3, norm=norm, act=act),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=norm is None),
        )
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels
            else ConvNormAct(in_channels, out_channels, 1, norm=norm, act=None)
        )
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(B, in, H, W)`` to ``(B, out, H, W)``: ``body(x) + shortcut(x)``."""
        return self.body(x) + self.shortcut(x)


def residual_block(norm: str | None = "bn", act: str | None = "relu") -> BlockFactory:
    """Level-block factory ``(in, out) -> ResidualUnit`` for decoders."""
    return lambda i, o: ResidualUnit(i, o, norm, act)


def residual_encoder_block(norm: str | None = "bn", act: str | None = "relu") -> BlockFactory:
    """Like :func:`residual_block`, but the first unit built is a stem (no pre-activation).

    ``PlainEncoder`` builds its levels in order, so the first call is level 0.
    """
    calls = itertools.count()
    return lambda i, o: ResidualUnit(i, o, norm, act, stem=next(calls) == 0)


RESUNET_FIDELITY = Fidelity(
    reference='Zhang, Liu & Wang 2018, "Road Extraction by Deep Residual U-Net" (GRSL), Table I',
    settings={"encoder_name": "unet", "in_channels": 3, "num_classes": 1},
    params=7_800_000,
    params_source="the paper's 7.8M (Sec. III-B); seglab builds 7,531,009 (-3.4 %)",
    deviations=(
        Deviation(
            "2x2 max-pooling between encoder levels; the paper's units down-sample with a "
            "stride-2 first convolution (no parameter difference)",
            "-",
            "the shared plain-encoder skeleton of the U-Net family",
        ),
        Deviation(
            "each decoder level narrows the up-sampled map with a 1x1 conv to the level width "
            "before the concatenation (the paper concatenates it as is); this is the -3.4 % in "
            "parameters",
            "-",
            "the shared U-Net decoder skeleton (upsample=transpose swaps the bilinear + 1x1 "
            "for a 2x2 up-conv of the same widths)",
        ),
    ),
)


@register("resunet", legacy=HALF_RESOLUTION_LEGACY, fidelity=RESUNET_FIDELITY)
def build_resunet(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "unet",
    weights: str | None = None,
    output_stride: int | None = None,
    base_channels: int | None = None,
    depth: int | None = None,
    decoder_channels: Sequence[int] | None = None,
    upsample: str = "bilinear",
    norm: str | None = "bn",
    act: str | None = "relu",
    full_resolution: bool = True,
) -> UNet:
    """Builds a Residual U-Net.

    Args:
        num_classes: Logit channels.
        in_channels: Input image channels.
        encoder_name: ``"unet"`` (residual plain encoder) or a timm name (``resnet34``, ...).
        weights: Encoder weights (see ``create_encoder``).
        output_stride: Deepest stride (None: the encoder's own; see ``family_encoder``).
        base_channels: First-level width of the plain encoder, doubled per level (None: 64).
        depth: Plain-encoder levels, the bridge included (None: 4, the paper's).
        decoder_channels: Decoder widths, deep to shallow; default: the skip widths (plain)
            or 256-128-64-32-16 (timm; 128-64-32-16 without ``full_resolution``).
        upsample: ``"bilinear"`` (paper) or ``"transpose"``.
        norm: Normalisation name.
        act: Activation name.
        full_resolution: Decode a timm encoder's features on to stride 1 with a skip-less
            level (see :class:`seglab.models.unet.UNetDecoder`); False stops at stride 2 and
            resizes the logits (the first round). The plain encoder already is at stride 1.
    """
    enc = family_encoder(
        "resunet",
        encoder_name,
        in_channels,
        weights,
        output_stride,
        base_channels,
        depth,
        default_base=64,
        default_depth=4,
        block=residual_encoder_block(norm, act),
    )
    if encoder_name != "unet":
        decoder_channels = decoder_channels or timm_decoder_channels(enc, 16, full_resolution)
    block = residual_block(norm, act)
    return UNet(enc, num_classes, decoder_channels, block, upsample, full_resolution)
