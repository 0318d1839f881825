"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer and Darrell, 2015) on VGG-16.

VGG-16's classifier becomes convolutional: fc6 is a 7x7 conv to 4096 (padding 3, so any input
size works, where Caffe padded the image by 100 and cropped), fc7 a 1x1 conv 4096 -> 4096, both
with ReLU and dropout 0.5; ``score_fr`` gives class scores at stride 32. FCN-16s adds scores of
pool4 (stride 16) to the 2x up-sampled stride-32 scores, FCN-8s also those of pool3. Every
up-sampling is a transposed conv initialised to bilinear interpolation (learnable, as in the
paper). timm's VGG features are taken before each max-pool (relu3_3 at 1/4, relu4_3 at 1/8), so
with ``pool_skips`` pool3/pool4 are recomputed by a 2x2 max-pool of the level at half the
skip's stride; other encoders use their level at the skip's stride directly. The final scores
are resized to the input (only needed when the input is not a multiple of 32).

FCN-8s with 21 classes has 134,489,759 parameters here, 0.16% above the 134,270,278 listed for
the reference Caffe model: VGG-16's convs with fc6 and fc7 are 134,260,544, score_fr 86,037, the
pool3/pool4 scores 16,170 and the three learnable bilinear up-samplers 127,008.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from seglab.models.blocks import ConvNormAct, bilinear_kernel, init_weights, resize_to
from seglab.models.context_heads import ContextModel, context_encoder
from seglab.models.registry import register


def bilinear_upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """A ``2f x 2f`` transposed conv with stride ``f`` initialised to bilinear up-sampling.

    With padding ``f / 2`` an ``h x w`` map becomes exactly ``fh x fw`` (half-pixel aligned).
    """
    up = nn.ConvTranspose2d(
        channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False
    )
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, 2 * factor))
    return up


class FCNHead(nn.Module):
    """fc6/fc7/score_fr on the deepest map, then skip fusion from coarse to fine.

    Args:
        encoder_channels: ``encoder.channels``.
        reductions: ``encoder.reductions``; the deepest must be 32.
        num_classes: Output channels.
        skip_strides: Strides of the fused skips, coarse to fine: ``()`` for FCN-32s, ``(16,)``
            for FCN-16s, ``(16, 8)`` for FCN-8s.
        pool_skips: Take each skip as a 2x2 max-pool of the level at half its stride (VGG in
            timm, whose levels precede the pools); otherwise the level at the skip's stride.
        fc_channels: Width of fc6/fc7 (4096).
        fc_kernel: Kernel of fc6 (7).
        dropout: Dropout after fc6 and fc7.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        reductions: Sequence[int],
        num_classes: int,
        skip_strides: Sequence[int] = (16, 8),
        pool_skips: bool = True,
        fc_channels: int = 4096,
        fc_kernel: int = 7,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        reductions = list(reductions)
        self.pool_skips = pool_skips
        self.skip_levels = [reductions.index(s // 2 if pool_skips else s) for s in skip_strides]
        self.fc = nn.Sequential(
            ConvNormAct(encoder_channels[-1], fc_channels, fc_kernel, norm=None),
            nn.Dropout(dropout),
            ConvNormAct(fc_channels, fc_channels, 1, norm=None),
            nn.Dropout(dropout),
        )
        self.score_fr = nn.Conv2d(fc_channels, num_classes, 1)
        self.score_skips = nn.ModuleList(
            nn.Conv2d(encoder_channels[i], num_classes, 1) for i in self.skip_levels
        )
        self.up_skips = nn.ModuleList(bilinear_upsampler(num_classes, 2) for _ in skip_strides)
        finest = skip_strides[-1] if skip_strides else reductions[-1]
        self.up_final = bilinear_upsampler(num_classes, finest)
        init_weights(self.fc)
        for score in self.score_skips:  # the paper zero-initialises the new skip scores
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Maps the feature list to scores at roughly the input size (stride 1)."""
        x = self.score_fr(self.fc(feats[-1]))
        for level, score, up in zip(self.skip_levels, self.score_skips, self.up_skips):
            skip = feats[level]
            if self.pool_skips:
                skip = F.max_pool2d(skip, 2)
            x = resize_to(up(x), skip) + score(skip)
        return self.up_final(x)


def _build_fcn(
    skip_strides: tuple[int, ...],
    num_classes: int,
    in_channels: int,
    encoder_name: str,
    weights: str | None,
    output_stride: int,
    pool_skips: bool | None,
    fc_channels: int,
    fc_kernel: int,
    dropout: float,
) -> ContextModel:
    if output_stride != 32:
        raise ValueError(
            f"FCN fuses skips at strides 16 and 8 of a stride-32 net; output_stride must be 32, "
            f"got {output_stride}. Use DeepLab or PSPNet for dilated encoders."
        )
    encoder = context_encoder(encoder_name, in_channels, output_stride, weights)
    if pool_skips is None:
        pool_skips = encoder_name.startswith("vgg")
    head = FCNHead(
        encoder.channels,
        encoder.reductions,
        num_classes,
        skip_strides,
        pool_skips,
        fc_channels,
        fc_kernel,
        dropout,
    )
    return ContextModel(encoder, head)


@register("fcn32s")
def build_fcn32s(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "vgg16",
    weights: str | None = None,
    output_stride: int = 32,
    pool_skips: bool | None = None,
    fc_channels: int = 4096,
    fc_kernel: int = 7,
    dropout: float = 0.5,
) -> ContextModel:
    """FCN-32s: stride-32 scores up-sampled 32x. ``pool_skips`` defaults to VGG encoders."""
    args = (num_classes, in_channels, encoder_name, weights, output_stride, pool_skips)
    return _build_fcn((), *args, fc_channels, fc_kernel, dropout)


@register("fcn16s")
def build_fcn16s(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "vgg16",
    weights: str | None = None,
    output_stride: int = 32,
    pool_skips: bool | None = None,
    fc_channels: int = 4096,
    fc_kernel: int = 7,
    dropout: float = 0.5,
) -> ContextModel:
    """FCN-16s: pool4 scores fused, then 16x up-sampling."""
    args = (num_classes, in_channels, encoder_name, weights, output_stride, pool_skips)
    return _build_fcn((16,), *args, fc_channels, fc_kernel, dropout)


@register("fcn8s")
def build_fcn8s(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "vgg16",
    weights: str | None = None,
    output_stride: int = 32,
    pool_skips: bool | None = None,
    fc_channels: int = 4096,
    fc_kernel: int = 7,
    dropout: float = 0.5,
) -> ContextModel:
    """FCN-8s: pool4 and pool3 scores fused, then 8x up-sampling."""
    args = (num_classes, in_channels, encoder_name, weights, output_stride, pool_skips)
    return _build_fcn((16, 8), *args, fc_channels, fc_kernel, dropout)
