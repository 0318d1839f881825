"""Eff-UNet (Baheti et al., CVPR-W 2020): an EfficientNet encoder under a U-Net decoder.

The paper's network, the default: EfficientNet-B7's MBConv stages are the contracting path and
a conventional U-Net decoder (transposed-conv up-sampling, skip concatenation, two 3x3
conv-BN-ReLU per level) the expanding one. Any ``efficientnet_b0`` .. ``efficientnet_b7`` (or
another timm name) is accepted.

``decoder="mbconv"`` is seglab's own decoder (the first round's default): two MBConvs per level
(Tan & Le, 2019: an inverted residual with squeeze-excitation and SiLU, i.e.
:func:`seglab.models.mobileunet.inverted_residual_block` with ``act="silu"``), the second with
the identity shortcut; it has a fraction of the conventional decoder's parameters. ``"unet"``
as the encoder builds a plain encoder made of the same MBConv blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

from seglab.models.mobileunet import inverted_residual_block, mobile_family_unet
from seglab.models.registry import Deviation, Fidelity, register
from seglab.models.unet import UNet

EFFUNET_FIDELITY = Fidelity(
    reference=(
        "Baheti, Innani, Gajre & Talbar 2020, Eff-UNet (CVPR Workshops): EfficientNet-B7 "
        "encoder, U-Net decoder"
    ),
    settings={"encoder_name": "efficientnet_b7", "num_classes": 26},
    params=None,
    params_source="the paper publishes no parameter count",
    deviations=(
        Deviation(
            "decoder widths follow seglab's U-Net rule for timm encoders (the paper's figure "
            "gives the block structure, not its widths)",
            "decoder_channels",
            "one width rule for every timm-encoder U-Net",
        ),
        Deviation(
            "decoder levels read as U-Net's: 2x2 transposed conv, skip concatenation, two 3x3 "
            "conv-BN-ReLU, on to full resolution",
            "upsample=bilinear",
            "the paper calls its decoder U-Net's",
        ),
        Deviation(
            "available, not the default: seglab's decoder of two MBConvs per level (the first "
            "round's default, expand 4, on B0)",
            "decoder=mbconv",
            "an all-MBConv network with a fraction of the conventional decoder's parameters",
        ),
    ),
)


@register(
    "effunet",
    legacy={
        1: {
            "encoder_name": "efficientnet_b0",
            "decoder": "mbconv",
            "expand_ratio": 4,
            "upsample": "bilinear",
            "full_resolution": False,
        }
    },
    fidelity=EFFUNET_FIDELITY,
)
def build_effunet(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "efficientnet_b7",
    weights: str | None = None,
    output_stride: int | None = None,
    base_channels: int | None = None,
    depth: int | None = None,
    decoder: str = "unet",
    decoder_channels: Sequence[int] | None = None,
    expand_ratio: int | None = None,
    se_ratio: float | None = None,
    upsample: str = "transpose",
    norm: str | None = "bn",
    full_resolution: bool = True,
) -> UNet:
    """Builds an Eff-UNet.

    Args:
        num_classes: Logit channels.
        in_channels: Input image channels.
        encoder_name: A timm name (``efficientnet_b7``, the paper's; ``efficientnet_b0`` ..
            ``b6`` for smaller ones) or ``"unet"`` (a plain encoder of MBConv blocks).
        weights: Encoder weights (see ``create_encoder``).
        output_stride: Deepest stride (None: the encoder's own; see ``family_encoder``).
        base_channels: First-level width of the plain encoder (None: 32).
        depth: Plain-encoder levels (None: 5).
        decoder: ``"unet"`` (the paper's conventional decoder) or ``"mbconv"`` (seglab's).
        decoder_channels: Decoder widths, deep to shallow; default: U-Net's rule for timm.
        expand_ratio: MBConv expansion (None: 6, EfficientNet's MBConv6) of the plain encoder's
            and the ``mbconv`` decoder's blocks; the first round used 4.
        se_ratio: Squeeze-excitation bottleneck as a fraction of the block input (None: 0.25).
        upsample: ``"transpose"`` (U-Net's up-conv) or ``"bilinear"`` (+ 1x1 conv).
        norm: Normalisation name.
        full_resolution: Decode on to stride 1 (EfficientNet's shallowest map is at stride 2)
            with a skip-less level; False stops at stride 2 and resizes (the first round).
    """
    ratio = 6 if expand_ratio is None else expand_ratio
    se = 0.25 if se_ratio is None else se_ratio
    return mobile_family_unet(
        "effunet",
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
        inverted_residual_block(ratio, "silu", se, norm),
        "mbconv",
        {"expand_ratio": expand_ratio, "se_ratio": se_ratio},
    )
