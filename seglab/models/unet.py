"""U-Net (Ronneberger et al., 2015): double 3x3 convs, transposed-conv up-sampling, skip concat.

With the plain encoder (``encoder_name="unet"``, 64 base channels) this is the paper's network,
about 31.0M parameters; any timm encoder works too, the decoder reads only channels and
reductions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from seglab.models.blocks import double_conv, resize_to
from seglab.models.encoders import Encoder, create_encoder
from seglab.models.registry import Deviation, Fidelity, register

BlockFactory = Callable[[int, int], nn.Module]


def up_layer(in_channels: int, out_channels: int, scale: int, mode: str = "transpose") -> nn.Module:
    """Up-sampling between two levels: a ``scale x scale`` transposed conv, or bilinear + 1x1."""
    if scale == 1:
        return nn.Conv2d(in_channels, out_channels, 1)
    if mode == "transpose":
        return nn.ConvTranspose2d(in_channels, out_channels, scale, stride=scale)
    return nn.Sequential(
        nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False),
        nn.Conv2d(in_channels, out_channels, 1),
    )


class UNetDecoder(nn.Module):
    """Expanding path: at each level up-sample, concatenate the skip, apply a block.

    Args:
        encoder_channels: ``encoder.channels``.
        reductions: ``encoder.reductions``.
        decoder_channels: Output channels per decoder level, deep to shallow (one fewer than
            the encoder levels); by default the skip's channels, as in the paper.
        block: Factory ``(in, out) -> module`` for the level block.
        upsample: ``"transpose"`` (paper) or ``"bilinear"``.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        reductions: Sequence[int],
        decoder_channels: Sequence[int] | None = None,
        block: BlockFactory = double_conv,
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        skips = list(encoder_channels[:-1])[::-1]
        outs = list(decoder_channels or skips)
        if len(outs) != len(skips):
            raise ValueError(f"decoder_channels needs {len(skips)} entries, got {len(outs)}.")
        red = list(reductions)[::-1]
        ins = [encoder_channels[-1], *outs[:-1]]
        self.ups = nn.ModuleList(
            up_layer(i, o, red[k] // red[k + 1], upsample)
            for k, (i, o) in enumerate(zip(ins, outs))
        )
        self.blocks = nn.ModuleList(block(o + s, o) for o, s in zip(outs, skips))
        self.out_channels = outs[-1]

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Maps encoder features (shallow to deep) to ``(B, out_channels, H_0, W_0)``."""
        x = feats[-1]
        for up, block, skip in zip(self.ups, self.blocks, feats[-2::-1]):
            x = resize_to(up(x), skip)
            x = block(torch.cat([skip, x], dim=1))
        return x


class UNet(nn.Module):
    """Encoder, U-Net decoder and a 1x1 score layer; logits at the input size.

    Args:
        encoder: Any encoder honouring the contract.
        num_classes: Output channels.
        decoder_channels: See :class:`UNetDecoder`.
        block: Decoder level block factory.
        upsample: ``"transpose"`` or ``"bilinear"``.
    """

    def __init__(
        self,
        encoder: Encoder,
        num_classes: int,
        decoder_channels: Sequence[int] | None = None,
        block: BlockFactory = double_conv,
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = UNetDecoder(
            encoder.channels, encoder.reductions, decoder_channels, block, upsample
        )
        self.head = nn.Conv2d(self.decoder.out_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(B, in_channels, H, W)`` to logits ``(B, num_classes, H, W)``."""
        return resize_to(self.head(self.decoder(self.encoder(x))), x)


def timm_decoder_channels(encoder: Encoder, base: int = 16) -> list[int] | None:
    """Default decoder widths for a timm encoder (smp's 256-128-64-32-16 rule); None for plain."""
    n = len(encoder.channels) - 1
    return [base * 2 ** (n - 1 - i) for i in range(n)]


#: The paper's network: in_channels=1, num_classes=2, 64 base channels, 23 convolutions.
UNET_FIDELITY = Fidelity(
    reference="Ronneberger, Fischer & Brox 2015, U-Net (MICCAI), Fig. 1",
    settings={"encoder_name": "unet", "in_channels": 1, "num_classes": 2, "norm": None},
    params=31_030_658,
    params_source="Fig. 1 counted layer by layer (23 convolutions with biases, no norm): 31.0M",
    deviations=(
        Deviation(
            "BatchNorm after every 3x3 conv (+5,888 parameters, 31,036,546 at the reference "
            "setting); the paper predates BatchNorm",
            "norm=None",
            "trains reliably at the learning rates of the other architectures",
        ),
        Deviation(
            "3x3 convs padded ('same'): output at the input size; the paper's are unpadded "
            "(572 -> 388) with overlap-tile prediction",
            "-",
            "logits at input resolution for any size (house contract); sliding-window "
            "inference covers large images",
        ),
        Deviation(
            "no dropout at the end of the contracting path",
            "-",
            "the paper gives no rate; augmentation is the data pipeline's job",
        ),
    ),
)


@register("unet", fidelity=UNET_FIDELITY)
def build_unet(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "unet",
    base_channels: int = 64,
    depth: int = 5,
    weights: str | None = None,
    output_stride: int = 32,
    decoder_channels: Sequence[int] | None = None,
    upsample: str = "transpose",
    norm: str | None = "bn",
) -> UNet:
    """The original U-Net; with a timm encoder the decoder narrows 256 -> 16 like smp's."""
    if encoder_name == "unet":
        enc = create_encoder(
            "unet", in_channels, base_channels=base_channels, depth=depth, norm=norm
        )
    else:
        enc = create_encoder(encoder_name, in_channels, output_stride, weights)
        decoder_channels = decoder_channels or timm_decoder_channels(enc)
    block = lambda i, o: double_conv(i, o, norm=norm)  # noqa: E731
    return UNet(enc, num_classes, decoder_channels, block, upsample)
