"""UNet 3+ (Huang et al., 2020): full-scale skip connections and full-scale deep supervision.

Decoder level ``i`` (0 = finest) gathers every scale: the finer encoder maps ``e_k, k < i``
(max-pooled with kernel = stride = their reduction ratio, then resized for odd sizes), the
same-scale encoder map ``e_i`` and every deeper decoder map ``d_k, k > i`` (bilinear
up-sampling; the deepest "decoder" map is the encoder bottleneck ``e_{D-1}``). Each goes through
a 3x3 conv-BN-ReLU to ``cat_channels`` (64); the ``D * cat_channels`` (320) concatenation is
fused by a 3x3 conv-BN-ReLU. A 3x3 conv on ``d_0`` gives the logits.

Flags: ``deep_supervision`` adds 3x3 side heads on ``d_1 .. d_{D-2}`` and the bottleneck, all
up-sampled to the input, returned in train mode as ``ModelOutput(logits=<d_0 head>,
side=[d_1, ..., d_{D-2}, bottleneck heads])``. ``cgm`` adds the classification-guided module on
the bottleneck: ``ModelOutput.cls`` ``(B, 1)`` logits in train mode; in eval its hard decision
suppresses the foreground of images it calls empty (:func:`seglab.models.heads.cgm_gate`).

With the plain encoder (64 base channels), 3 input channels, 1 class and neither flag the
network has the paper's 26.97M parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from seglab.models.blocks import ConvNormAct, resize_to
from seglab.models.encoders import Encoder, create_encoder
from seglab.models.heads import ClassificationGuidedModule, SegmentationHead, cgm_gate
from seglab.models.output import ModelOutput
from seglab.models.registry import register


class UNet3PlusDecoder(nn.Module):
    """Full-scale skip decoder.

    Args:
        encoder_channels: ``encoder.channels``.
        reductions: ``encoder.reductions``.
        cat_channels: Channels of each of the ``D`` branches (64 in the paper).
        norm: Normalisation name.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        reductions: Sequence[int],
        cat_channels: int = 64,
        norm: str | None = "bn",
    ) -> None:
        super().__init__()
        chans, red = list(encoder_channels), list(reductions)
        self.depth = d = len(chans)
        self.out_channels = up = cat_channels * d
        self.pool_ratios = [[red[i] // red[k] for k in range(i)] for i in range(d - 1)]
        self.branches = nn.ModuleList()
        self.fuses = nn.ModuleList()
        for i in range(d - 1):
            ins = [chans[k] if k <= i or k == d - 1 else up for k in range(d)]
            self.branches.append(
                nn.ModuleList(ConvNormAct(c, cat_channels, 3, norm=norm) for c in ins)
            )
            self.fuses.append(ConvNormAct(up, up, 3, norm=norm))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Maps encoder maps (shallow to deep) to ``[d_0, ..., d_{D-2}, e_{D-1}]``."""
        dec: list[torch.Tensor] = [feats[-1]] * self.depth
        for i in reversed(range(self.depth - 1)):
            target = feats[i]
            parts = []
            for k, conv in enumerate(self.branches[i]):
                if k < i:
                    r = self.pool_ratios[i][k]
                    src = resize_to(F.max_pool2d(feats[k], r, r) if r > 1 else feats[k], target)
                elif k == i:
                    src = target
                else:
                    src = resize_to(dec[k], target)
                parts.append(conv(src))
            dec[i] = self.fuses[i](torch.cat(parts, dim=1))
        return dec


class UNet3Plus(nn.Module):
    """Encoder, full-scale decoder, 3x3 head, optional side heads and CGM.

    Args:
        encoder: Any encoder honouring the contract.
        num_classes: Output channels.
        cat_channels: Branch width of the decoder.
        norm: Normalisation name.
        deep_supervision: Side heads on the deeper decoder levels and the bottleneck.
        cgm: Classification-guided module on the bottleneck.
    """

    def __init__(
        self,
        encoder: Encoder,
        num_classes: int,
        cat_channels: int = 64,
        norm: str | None = "bn",
        deep_supervision: bool = False,
        cgm: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = UNet3PlusDecoder(encoder.channels, encoder.reductions, cat_channels, norm)
        up, deepest = self.decoder.out_channels, encoder.channels[-1]
        self.head = SegmentationHead(up, num_classes, 3)
        self.side_heads = None
        if deep_supervision:
            ins = [up] * (self.decoder.depth - 2) + [deepest]
            self.side_heads = nn.ModuleList(SegmentationHead(c, num_classes, 3) for c in ins)
        self.cgm = ClassificationGuidedModule(deepest) if cgm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | ModelOutput:
        """Logits ``(B, num_classes, H, W)`` in eval (CGM-gated); ``ModelOutput`` in train."""
        feats = self.encoder(x)
        dec = self.decoder(feats)
        logits = self.head(dec[0], x)
        cls = self.cgm(feats[-1]) if self.cgm is not None else None
        if not self.training:
            return logits if cls is None else cgm_gate(logits, cls)
        if self.side_heads is None and cls is None:
            return logits
        side = []
        if self.side_heads is not None:
            side = [head(d, x) for head, d in zip(self.side_heads, dec[1:])]
        return ModelOutput(logits=logits, side=side, cls=cls)


@register("unet3plus")
def build_unet3plus(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "unet",
    weights: str | None = None,
    output_stride: int = 32,
    base_channels: int = 64,
    depth: int = 5,
    cat_channels: int = 64,
    norm: str | None = "bn",
    deep_supervision: bool = False,
    cgm: bool = False,
) -> UNet3Plus:
    """Builds UNet 3+.

    Args:
        num_classes: Logit channels.
        in_channels: Input image channels.
        encoder_name: ``"unet"`` (paper: 64-128-256-512-1024) or a timm name.
        weights: Encoder weights (see ``create_encoder``).
        output_stride: Deepest stride of a timm encoder.
        base_channels: First-level width of the plain encoder.
        depth: Plain-encoder levels.
        cat_channels: Branch width (64; the fused width is ``depth * cat_channels``).
        norm: Normalisation name.
        deep_supervision: Full-scale deep supervision side heads.
        cgm: Classification-guided module (``ModelOutput.cls``, eval-time gate).
    """
    if encoder_name == "unet":
        enc = create_encoder(
            "unet",
            in_channels,
            weights=weights,
            base_channels=base_channels,
            depth=depth,
            norm=norm,
        )
    else:
        enc = create_encoder(encoder_name, in_channels, output_stride, weights)
    return UNet3Plus(enc, num_classes, cat_channels, norm, deep_supervision, cgm)
