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


def full_resolution_scales(reductions: Sequence[int]) -> list[int]:
    """Up-sampling factors of the skip-less levels from ``reductions[0]`` down to stride 1.

    ``[2]`` for a ResNet (shallowest map at stride 2), ``[2, 2]`` at stride 4, ``[]`` for the
    plain encoder, whose first level is already at full resolution.
    """
    scales, r = [], int(reductions[0])
    while r > 1:
        scales.append(2 if r % 2 == 0 else r)
        r //= scales[-1]
    return scales


def decoder_scales(reductions: Sequence[int], full_resolution: bool) -> list[int]:
    """:func:`full_resolution_scales` when ``full_resolution``; ``full_resolution=False`` on an
    encoder already at full resolution (the plain ``unet`` encoder) would change nothing, so it
    raises instead."""
    scales = full_resolution_scales(reductions)
    if not full_resolution and not scales:
        raise ValueError(
            "full_resolution=False changes nothing here: the encoder's shallowest map is already "
            "at the input's resolution (the plain 'unet' encoder). It applies to timm encoders "
            "(shallowest map at stride 2 or coarser); drop the option."
        )
    return scales if full_resolution else []


def first_round_full_resolution(options: dict) -> bool:
    """The first round's ``full_resolution`` (legacy version 1): timm encoders stopped at the
    shallowest skip; the plain encoder decoded to full resolution, as it still does."""
    return options.get("encoder_name", "unet") == "unet"


def skipless_levels(
    in_channels: int,
    widths: Sequence[int],
    scales: Sequence[int],
    block: BlockFactory = double_conv,
    upsample: str = "transpose",
) -> nn.Sequential:
    """Decoder levels without a skip (up-sample, then a block), e.g. from stride 2 to 1."""
    ins = [in_channels, *widths[:-1]]
    return nn.Sequential(
        *(
            nn.Sequential(up_layer(i, o, s, upsample), block(o, o))
            for i, o, s in zip(ins, widths, scales)
        )
    )


class UNetDecoder(nn.Module):
    """Expanding path: at each level up-sample, concatenate the skip, apply a block.

    Args:
        encoder_channels: ``encoder.channels``.
        reductions: ``encoder.reductions``.
        decoder_channels: Output channels per decoder level, deep to shallow: one per skip
            (one fewer than the encoder levels), plus one per skip-less level when
            ``full_resolution`` adds them; by default the skip's channels, as in the paper
            (halved again for each skip-less level).
        block: Factory ``(in, out) -> module`` for the level block.
        upsample: ``"transpose"`` (paper) or ``"bilinear"``.
        full_resolution: When the shallowest encoder map is coarser than the input (timm
            encoders start at stride 2 or 4), add skip-less levels (up-sample x2 and a block,
            as smp does) until stride 1; otherwise stop at the shallowest skip and let the
            model resize the logits. A no-op for the plain encoder (already at stride 1).
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        reductions: Sequence[int],
        decoder_channels: Sequence[int] | None = None,
        block: BlockFactory = double_conv,
        upsample: str = "transpose",
        full_resolution: bool = False,
    ) -> None:
        super().__init__()
        skips = list(encoder_channels[:-1])[::-1]
        tail = decoder_scales(reductions, full_resolution)
        outs = list(
            decoder_channels or [*skips, *(skips[-1] // 2 ** (k + 1) for k in range(len(tail)))]
        )
        if len(outs) != len(skips) + len(tail):
            extra = f" plus {len(tail)} skip-less level(s) to reach full resolution" if tail else ""
            raise ValueError(
                f"decoder_channels needs {len(skips) + len(tail)} entries (one per skip level"
                f"{extra}), got {len(outs)}" + ("; or set full_resolution: false." if tail else ".")
            )
        red = list(reductions)[::-1]
        scales = [red[k] // red[k + 1] for k in range(len(skips))] + tail
        ins = [encoder_channels[-1], *outs[:-1]]
        self.ups = nn.ModuleList(up_layer(i, o, s, upsample) for i, o, s in zip(ins, outs, scales))
        skips += [0] * len(tail)
        self.blocks = nn.ModuleList(block(o + s, o) for o, s in zip(outs, skips))
        self.out_channels = outs[-1]

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Maps encoder features (shallow to deep) to ``(B, out_channels, h, w)``: the
        shallowest map's size, or about the input's with ``full_resolution``."""
        x, skips = feats[-1], feats[-2::-1]
        for k, (up, block) in enumerate(zip(self.ups, self.blocks)):
            x = up(x)
            if k < len(skips):
                x = torch.cat([skips[k], resize_to(x, skips[k])], dim=1)
            x = block(x)
        return x


class UNet(nn.Module):
    """Encoder, U-Net decoder and a 1x1 score layer; logits at the input size.

    Args:
        encoder: Any encoder honouring the contract.
        num_classes: Output channels.
        decoder_channels: See :class:`UNetDecoder`.
        block: Decoder level block factory.
        upsample: ``"transpose"`` or ``"bilinear"``.
        full_resolution: Decode to stride 1 (see :class:`UNetDecoder`).
    """

    def __init__(
        self,
        encoder: Encoder,
        num_classes: int,
        decoder_channels: Sequence[int] | None = None,
        block: BlockFactory = double_conv,
        upsample: str = "transpose",
        full_resolution: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = UNetDecoder(
            encoder.channels, encoder.reductions, decoder_channels, block, upsample, full_resolution
        )
        self.head = nn.Conv2d(self.decoder.out_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(B, in_channels, H, W)`` to logits ``(B, num_classes, H, W)``."""
        return resize_to(self.head(self.decoder(self.encoder(x))), x)


def timm_decoder_channels(
    encoder: Encoder, base: int = 16, full_resolution: bool = False
) -> list[int]:
    """Decoder widths for a timm encoder, smp's rule: ``base`` at the shallowest decoder level,
    doubled at each deeper one.

    With ``full_resolution`` the skip-less levels count too: 256-128-64-32-16 on a ResNet
    (smp's default); without, 128-64-32-16 (the first round's default, stopping at stride 2).
    """
    n = len(encoder.channels) - 1
    n += len(full_resolution_scales(encoder.reductions)) if full_resolution else 0
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


#: The first round's U-Net family on timm encoders stopped at the shallowest skip (stride 2).
HALF_RESOLUTION_LEGACY = {1: {"full_resolution": first_round_full_resolution}}


@register("unet", legacy=HALF_RESOLUTION_LEGACY, fidelity=UNET_FIDELITY)
def build_unet(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "unet",
    base_channels: int = 64,
    depth: int = 5,
    weights: str | None = None,
    output_stride: int | None = None,
    decoder_channels: Sequence[int] | None = None,
    upsample: str = "transpose",
    norm: str | None = "bn",
    full_resolution: bool = True,
) -> UNet:
    """The original U-Net; with a timm encoder the decoder narrows 256 -> 16 like smp's.

    ``full_resolution`` (timm encoders) decodes on to stride 1 with skip-less levels, as smp
    does (widths 256-128-64-32-16 on a ResNet); False stops at the shallowest skip (stride 2,
    widths 128-64-32-16, logits resized: the first round's default). ``output_stride`` (None:
    the encoder's own) must be the stride the encoder gives, or it raises.
    """
    stride = output_stride or 32
    if encoder_name == "unet":
        enc = create_encoder(
            "unet",
            in_channels,
            stride,
            weights,
            base_channels=base_channels,
            depth=depth,
            norm=norm,
        )
    else:
        enc = create_encoder(encoder_name, in_channels, stride, weights)
        decoder_channels = decoder_channels or timm_decoder_channels(enc, 16, full_resolution)
    if output_stride is not None and enc.output_stride != output_stride:
        raise ValueError(
            f"unet: output_stride={output_stride} is not honoured by encoder {encoder_name!r} "
            f"(depth {depth if encoder_name == 'unet' else '-'}), which gives stride "
            f"{enc.output_stride}; use a deeper encoder or an output_stride it reaches."
        )
    block = lambda i, o: double_conv(i, o, norm=norm)  # noqa: E731
    return UNet(enc, num_classes, decoder_channels, block, upsample, full_resolution)
