"""FCN's head: fc6/fc7 and the skip fusion, bilinear up-samplers, pad-and-crop for odd sizes.

See :mod:`seglab.models.fcn` for the architecture and its reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from seglab.models.blocks import ConvNormAct, bilinear_kernel, init_weights, resize_to
from seglab.models.context_heads import ATROUS_INITS, ContextModel


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


class FixedBilinearUp(nn.Module):
    """:func:`bilinear_upsampler`'s interpolation with a fixed kernel (a buffer, not learned).

    Args:
        channels: Channels, each up-sampled on its own.
        factor: Up-sampling factor ``f`` (kernel ``2f``, stride ``f``, padding ``f / 2``).
    """

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__()
        kernel = bilinear_kernel(1, 2 * factor).expand(channels, 1, -1, -1).clone()
        self.register_buffer("kernel", kernel, persistent=False)
        self.channels, self.factor = channels, factor
        self.kernel_size, self.stride = (2 * factor, 2 * factor), (factor, factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(B, C, h, w)`` to ``(B, C, fh, fw)``."""
        pad = self.factor // 2
        weight = self.kernel.to(x.dtype)
        return F.conv_transpose2d(x, weight, stride=self.factor, padding=pad, groups=self.channels)


UPSAMPLING = ("intermediate", "none", "all")


def _upsampler(channels: int, factor: int, learned: bool) -> nn.Module:
    return bilinear_upsampler(channels, factor) if learned else FixedBilinearUp(channels, factor)


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
        skip_scales: Fixed factors on the skips before their scores, coarse to fine
            (``(0.01, 0.0001)`` for pool4 and pool3, the all-at-once reference); None: 1.
        learn_upsampling: ``"intermediate"`` (learned 2x, fixed final: the paper), ``"none"``
            or ``"all"``.
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
        skip_scales: Sequence[float] | None = (0.01, 0.0001),
        learn_upsampling: str = "intermediate",
    ) -> None:
        super().__init__()
        if learn_upsampling not in UPSAMPLING:
            raise ValueError(
                f"learn_upsampling must be one of {UPSAMPLING}, got {learn_upsampling!r}."
            )
        scales = [1.0] * len(skip_strides) if skip_scales is None else list(skip_scales)
        if len(scales) != len(skip_strides):
            raise ValueError(
                f"skip_scales needs one factor per skip (coarse to fine, {len(skip_strides)} "
                f"here), got {skip_scales!r}."
            )
        self.skip_scales = [float(v) for v in scales]
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
        learn_mid = learn_upsampling != "none"
        self.up_skips = nn.ModuleList(_upsampler(num_classes, 2, learn_mid) for _ in skip_strides)
        finest = skip_strides[-1] if skip_strides else reductions[-1]
        self.up_final = _upsampler(num_classes, finest, learn_upsampling == "all")
        init_weights(self.fc)
        for score in self.score_skips:  # the paper zero-initialises the new skip scores
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Maps the feature list to scores at roughly the input size (stride 1)."""
        x = self.score_fr(self.fc(feats[-1]))
        parts = zip(self.skip_levels, self.skip_scales, self.score_skips, self.up_skips)
        for level, scale, score, up in parts:
            skip = feats[level]
            if self.pool_skips:
                skip = F.max_pool2d(skip, 2)
            if scale != 1.0:
                skip = skip * scale
            x = resize_to(up(x), skip) + score(skip)
        return self.up_final(x)


class FCNModel(ContextModel):
    """:class:`ContextModel` that pads odd inputs to a multiple of the stride and crops back.

    Args:
        encoder: The encoder (stride 32).
        head: :class:`FCNHead`.
        odd_size: ``"pad"`` (zero-pad bottom/right, crop the scores) or ``"resize"``.
        fc_init: ``"centre"`` starts fc6 as its centre tap, ``"random"`` keeps every tap (the
            paper's fc6 came from VGG's ImageNet classifier); it is :class:`ContextModel`'s
            ``atrous_init``, which reaches fc6's far taps as it does atrous ones.
    """

    def __init__(
        self, encoder: nn.Module, head: nn.Module, odd_size: str = "pad", fc_init: str = "centre"
    ) -> None:
        if fc_init not in ATROUS_INITS:
            raise ValueError(f"fc_init must be one of {ATROUS_INITS}, got {fc_init!r}.")
        super().__init__(encoder, head, atrous_init=fc_init)
        if odd_size not in ("pad", "resize"):
            raise ValueError(f"odd_size must be 'pad' or 'resize', got {odd_size!r}.")
        self.odd_size = odd_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes, H, W)`` for any ``H x W``."""
        if self.odd_size == "resize":
            return super().forward(x)
        h, w = x.shape[-2:]
        stride = self.encoder.output_stride
        padded = F.pad(x, (0, (-w) % stride, 0, (-h) % stride))
        return super().forward(padded)[..., :h, :w]
