"""Mobile U-Net (Jing et al., 2020, "Mobile-Unet"): a MobileNetV2 encoder under a U-Net decoder.

The paper's network, the default: MobileNetV2's features feed a conventional U-Net decoder
(transposed-conv up-sampling, skip concatenation, two 3x3 conv-BN-ReLU per level).

``decoder="inverted_residual"`` is seglab's own lighter decoder (the first round's default):
each level up-samples, concatenates the skip and applies two inverted residuals (Sandler et al.,
2018): 1x1 expansion, 3x3 depthwise, linear 1x1 projection, with the identity added when input
and output shapes match (always in the second block). :class:`InvertedResidual` also takes a
squeeze-excitation ratio and an activation, which is all that separates it from EfficientNet's
MBConv (see ``effunet``). ``encoder_name="unet"`` builds a plain encoder of the same blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seglab.models.blocks import ConvNormAct, double_conv, make_act
from seglab.models.family_encoder import family_encoder, refuse_unset
from seglab.models.registry import Deviation, Fidelity, register
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


#: Decoder choices of ``mobileunet`` and ``effunet``: the papers' conventional U-Net decoder, or
#: seglab's decoder made of the encoder's own block.
DECODERS = ("unet", "inverted_residual", "mbconv")


def mobile_family_unet(
    builder: str,
    num_classes: int,
    in_channels: int,
    encoder_name: str,
    weights: str | None,
    output_stride: int | None,
    base_channels: int | None,
    depth: int | None,
    decoder: str,
    decoder_channels: Sequence[int] | None,
    upsample: str,
    norm: str | None,
    full_resolution: bool,
    block: BlockFactory,
    block_name: str,
    block_options: dict[str, object],
) -> UNet:
    """A U-Net on a mobile encoder: timm, or the plain path built of ``block``.

    Args:
        builder: Architecture name, for error messages.
        num_classes: Logit channels.
        in_channels: Input image channels.
        encoder_name: ``"unet"`` (plain encoder of ``block``) or a timm name.
        weights: Encoder weights.
        output_stride: Deepest stride wanted (None: the encoder's own).
        base_channels: Plain-encoder first width (None: 32).
        depth: Plain-encoder levels (None: 5).
        decoder: ``"unet"`` (two 3x3 conv-norm-ReLU per level, the papers') or ``block_name``
            (two ``block`` per level, seglab's).
        decoder_channels: Decoder widths, deep to shallow (None: skip widths for the plain
            encoder, the U-Net rule for timm).
        upsample: ``"transpose"`` or ``"bilinear"``.
        norm: Normalisation name.
        full_resolution: Decode a timm encoder's features on to stride 1 with skip-less
            levels (see :class:`seglab.models.unet.UNetDecoder`); the plain encoder already is.
        block: Level-block factory of the plain encoder and of the ``block_name`` decoder.
        block_name: ``"inverted_residual"`` or ``"mbconv"``.
        block_options: The options that shape ``block`` (``expand_ratio``, ...), as given
            (None: unset); refused where no ``block`` is built.
    """
    if decoder not in ("unet", block_name):
        raise ValueError(f"{builder}: decoder={decoder!r}; choose 'unet' or {block_name!r}.")
    if encoder_name != "unet" and decoder == "unet":
        refuse_unset(
            builder,
            f"with a timm encoder and decoder='unet' (they shape the {block_name} blocks of "
            f"the plain encoder or of decoder={block_name!r})",
            **block_options,
        )
    enc = family_encoder(
        builder,
        encoder_name,
        in_channels,
        weights,
        output_stride,
        base_channels,
        depth,
        default_base=32,
        block=block,
    )
    if encoder_name != "unet":
        decoder_channels = decoder_channels or timm_decoder_channels(enc, 16, full_resolution)
    if decoder == "unet":
        block = lambda i, o: double_conv(i, o, norm=norm)  # noqa: E731
    return UNet(enc, num_classes, decoder_channels, block, upsample, full_resolution)


#: Mobile-Unet (Jing et al. 2020): MobileNetV2 encoder, U-Net decoder of five deconvolutions.
MOBILEUNET_FIDELITY = Fidelity(
    reference=(
        "Jing, Wang, Raetsch & Zhang 2020, Mobile-Unet (Textile Research Journal): MobileNetV2 "
        "encoder, U-Net skips, deconvolution (transposed-conv) decoder"
    ),
    settings={"encoder_name": "mobilenetv2_100", "num_classes": 2},
    params=None,
    params_source="the paper publishes no parameter count",
    deviations=(
        Deviation(
            "each of the five deconvolution levels ends in two 3x3 conv-BN-ReLU after the skip "
            "concatenation: the paper names the deconvolutions and the skips, not the "
            "convolutions after them, read here as U-Net's",
            "-",
            "the conventional U-Net decoder is the closest reading of the paper",
        ),
        Deviation(
            "available, not the default: seglab's decoder of two MobileNetV2 inverted "
            "residuals per level (the first round's default)",
            "decoder=inverted_residual",
            "about a quarter of the conventional decoder's parameters",
        ),
    ),
)


@register(
    "mobileunet",
    legacy={1: {"decoder": "inverted_residual", "upsample": "bilinear", "full_resolution": False}},
    fidelity=MOBILEUNET_FIDELITY,
)
def build_mobileunet(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "mobilenetv2_100",
    weights: str | None = None,
    output_stride: int | None = None,
    base_channels: int | None = None,
    depth: int | None = None,
    decoder: str = "unet",
    decoder_channels: Sequence[int] | None = None,
    expand_ratio: int | None = None,
    upsample: str = "transpose",
    norm: str | None = "bn",
    full_resolution: bool = True,
) -> UNet:
    """Builds a Mobile U-Net.

    Args:
        num_classes: Logit channels.
        in_channels: Input image channels.
        encoder_name: A timm name (``mobilenetv2_100``, ``mobilenetv2_050``, ...) or ``"unet"``
            for a plain encoder made of inverted-residual blocks.
        weights: Encoder weights (see ``create_encoder``).
        output_stride: Deepest stride (None: the encoder's own; see ``family_encoder``).
        base_channels: First-level width of the plain encoder (None: 32).
        depth: Plain-encoder levels (None: 5).
        decoder: ``"unet"`` (the paper's: transposed conv, skip concatenation, two 3x3
            conv-BN-ReLU) or ``"inverted_residual"`` (seglab's: two inverted residuals per
            level, about 4x fewer decoder parameters; the first round's default).
        decoder_channels: Decoder widths, deep to shallow; default 256-128-64-32-16 for timm
            (128-64-32-16 without ``full_resolution``).
        expand_ratio: Inverted-residual expansion (None: 6, MobileNetV2's) of the plain
            encoder's and the ``inverted_residual`` decoder's blocks.
        upsample: ``"transpose"`` (the paper's deconvolution) or ``"bilinear"`` (+ 1x1 conv).
        norm: Normalisation name.
        full_resolution: Decode on to stride 1: MobileNetV2's shallowest map is at stride 2,
            so the fifth deconvolution is a skip-less level (the paper's five); False stops at
            stride 2 and resizes the logits (the first round).
    """
    ratio = 6 if expand_ratio is None else expand_ratio
    return mobile_family_unet(
        "mobileunet",
        num_classes,
        in_channels,
        encoder_name,
        weights,
        output_stride,
        base_channels,
        depth,
        decoder,
        decoder_channels,
        upsample,
        norm,
        full_resolution,
        inverted_residual_block(ratio, "relu6", 0.0, norm),
        "inverted_residual",
        {"expand_ratio": expand_ratio},
    )
