"""EfficientNet U-Net: an EfficientNet encoder and a decoder of MBConv blocks.

MBConv (Tan & Le, 2019) is an inverted residual with squeeze-excitation and SiLU, so the
decoder level is :func:`seglab.models.mobileunet.inverted_residual_block` with
``act="silu"`` and ``se_ratio=0.25``: two MBConvs per level, the second with the identity
shortcut. Any ``efficientnet_b0`` .. ``efficientnet_b7`` (or another timm name) is accepted;
``"unet"`` builds a plain encoder made of the same MBConv blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

from seglab.models.mobileunet import inverted_residual_block, inverted_unet
from seglab.models.registry import register
from seglab.models.unet import UNet


@register("effunet")
def build_effunet(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "efficientnet_b0",
    weights: str | None = None,
    output_stride: int = 32,
    base_channels: int = 32,
    depth: int = 5,
    decoder_channels: Sequence[int] | None = None,
    expand_ratio: int = 4,
    se_ratio: float = 0.25,
    upsample: str = "bilinear",
    norm: str | None = "bn",
) -> UNet:
    """Builds an EfficientNet U-Net.

    Args:
        num_classes: Logit channels.
        in_channels: Input image channels.
        encoder_name: A timm name (``efficientnet_b0`` .. ``efficientnet_b7``) or ``"unet"``.
        weights: Encoder weights (see ``create_encoder``).
        output_stride: Deepest stride of a timm encoder.
        base_channels: First-level width of the plain encoder.
        depth: Plain-encoder levels.
        decoder_channels: Decoder widths, deep to shallow; default 128-64-32-16 for timm.
        expand_ratio: MBConv expansion (EfficientNet uses 6; 4 keeps the decoder, which
            expands the concatenated skip, lighter).
        se_ratio: Squeeze-excitation bottleneck as a fraction of the block input.
        upsample: ``"bilinear"`` or ``"transpose"``.
        norm: Normalisation name.
    """
    block = inverted_residual_block(expand_ratio, "silu", se_ratio, norm)
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
