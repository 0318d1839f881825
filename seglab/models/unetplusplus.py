"""UNet++ (Zhou et al., 2018/2019): nested, densely connected skip pathways.

Node ``X(i, j)`` (row ``i`` = encoder level, column ``j``) is the encoder map for ``j == 0``;
otherwise a level block applied to ``cat(X(i, 0), ..., X(i, j-1), up(X(i+1, j-1)))``. The grid
is built in loops for any encoder depth ``D``; the top row ``X(0, 1..D-1)`` carries the heads.

* ``deep_supervision=True`` puts a 1x1 head on every top-row node; in train mode the model
  returns ``ModelOutput(logits=head(X(0,D-1)), side=[head(X(0,1)), ..., head(X(0,D-2))])``.
* ``mode="ensemble"`` averages all top-row heads in eval mode (``"last"`` uses the deepest).
* ``prune_level = L`` (1..D-1, needs deep supervision unless ``L == D-1``) makes eval run only
  the sub-network of ``X(0, L)``: encoder levels ``0..L`` and nodes with ``i + j <= L``. The
  plain encoder then stops after level ``L``; a timm encoder still runs whole (its deeper
  stages are discarded), so there only the decoder is pruned. Training ignores pruning.

With the plain encoder and ``base_channels=32`` (the paper's 32-64-128-256-512) this is the
paper's network; the default up-sampling is a 2x2 transposed conv as in the original code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from seglab.models.blocks import double_conv, resize_to
from seglab.models.encoders import Encoder, PlainEncoder, create_encoder
from seglab.models.output import ModelOutput
from seglab.models.registry import register
from seglab.models.unet import BlockFactory, timm_decoder_channels, up_layer

MODES = ("last", "ensemble")


def encode(encoder: Encoder, x: torch.Tensor, levels: int | None = None) -> list[torch.Tensor]:
    """Runs ``encoder`` and returns its first ``levels`` maps (all when None).

    A :class:`PlainEncoder` really stops after ``levels`` blocks; other encoders run whole.
    """
    if levels is None or not isinstance(encoder, PlainEncoder):
        return list(encoder(x))[:levels]
    feats = []
    for i, block in enumerate(encoder.blocks[:levels]):
        x = block(x if i == 0 else encoder.pool(x))
        feats.append(x)
    return feats


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of ``model(x)`` without gradients, counted by ``torch.utils.flop_counter``."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops()


class UNetPlusPlus(nn.Module):
    """Encoder, nested dense decoder grid and top-row heads.

    Args:
        encoder: Any encoder honouring the contract (``D = len(encoder.channels)`` levels).
        num_classes: Output channels.
        decoder_channels: Width of the nodes of each row ``0..D-2``, given deep to shallow like
            ``UNet``'s; by default the encoder widths of those rows.
        block: Node block factory ``(in, out) -> module``.
        upsample: ``"transpose"`` or ``"bilinear"``.
        deep_supervision: Heads on every top-row node (needed for pruning and ensembling).
        mode: ``"last"`` or ``"ensemble"`` (eval-time combination of the heads).
        prune_level: Eval-time pruning level, see the module docstring.
    """

    def __init__(
        self,
        encoder: Encoder,
        num_classes: int,
        decoder_channels: Sequence[int] | None = None,
        block: BlockFactory = double_conv,
        upsample: str = "transpose",
        deep_supervision: bool = False,
        mode: str = "last",
        prune_level: int | None = None,
    ) -> None:
        super().__init__()
        chans, red = list(encoder.channels), list(encoder.reductions)
        self.depth = d = len(chans)
        widths = list(decoder_channels)[::-1] if decoder_channels else chans[:-1]
        if len(widths) != d - 1:
            raise ValueError(f"decoder_channels needs {d - 1} entries, got {len(widths)}.")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        if mode == "ensemble" and not deep_supervision:
            raise ValueError("mode='ensemble' needs deep_supervision=True.")
        self.encoder = encoder
        self.deep_supervision, self.mode = deep_supervision, mode
        self.ups, self.nodes = nn.ModuleDict(), nn.ModuleDict()
        for j in range(1, d):
            for i in range(d - j):
                below = chans[i + 1] if j == 1 else widths[i + 1]
                self.ups[f"{i}_{j}"] = up_layer(below, widths[i], red[i + 1] // red[i], upsample)
                self.nodes[f"{i}_{j}"] = block(chans[i] + j * widths[i], widths[i])
        head_cols = range(1, d) if deep_supervision else [d - 1]
        self.heads = nn.ModuleDict(
            {str(j): nn.Conv2d(widths[0], num_classes, 1) for j in head_cols}
        )
        self.prune_level = prune_level

    @property
    def prune_level(self) -> int | None:
        """Column ``L`` of the top-row node whose sub-network eval runs; None for all."""
        return self._prune_level

    @prune_level.setter
    def prune_level(self, level: int | None) -> None:
        if level is not None:
            if not 1 <= level <= self.depth - 1:
                raise ValueError(f"prune_level must be in 1..{self.depth - 1}, got {level}.")
            if str(level) not in self.heads:
                raise ValueError("prune_level below the last column needs deep_supervision=True.")
        self._prune_level = level

    def forward(self, x: torch.Tensor) -> torch.Tensor | ModelOutput:
        """Logits ``(B, num_classes, H, W)`` in eval; ``ModelOutput`` in train with supervision."""
        last = self.depth - 1
        if not self.training and self.prune_level is not None:
            last = self.prune_level
        feats = encode(self.encoder, x, last + 1)
        grid = {(i, 0): f for i, f in enumerate(feats)}
        for j in range(1, last + 1):
            for i in range(last + 1 - j):
                up = resize_to(self.ups[f"{i}_{j}"](grid[i + 1, j - 1]), feats[i])
                grid[i, j] = self.nodes[f"{i}_{j}"](
                    torch.cat([grid[i, k] for k in range(j)] + [up], dim=1)
                )
        training_sides = self.training and self.deep_supervision
        if training_sides or self.mode == "ensemble":
            cols = range(1, last + 1)
        else:
            cols = [last]
        outs = [resize_to(self.heads[str(j)](grid[0, j]), x) for j in cols]
        if training_sides:
            return ModelOutput(logits=outs[-1], side=outs[:-1])
        return torch.stack(outs).mean(0) if len(outs) > 1 else outs[-1]


@register("unetplusplus")
def build_unetplusplus(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "unet",
    weights: str | None = None,
    output_stride: int = 32,
    base_channels: int = 32,
    depth: int = 5,
    decoder_channels: Sequence[int] | None = None,
    upsample: str = "transpose",
    norm: str | None = "bn",
    deep_supervision: bool = False,
    mode: str = "last",
    prune_level: int | None = None,
) -> UNetPlusPlus:
    """Builds UNet++.

    Args:
        num_classes: Logit channels.
        in_channels: Input image channels.
        encoder_name: ``"unet"`` (paper; 32 base channels) or a timm name.
        weights: Encoder weights (see ``create_encoder``).
        output_stride: Deepest stride of a timm encoder.
        base_channels: First-level width of the plain encoder (32 in the UNet++ paper).
        depth: Plain-encoder levels.
        decoder_channels: Row widths, deep to shallow; default: encoder widths (plain) or
            128-64-32-16 (timm).
        upsample: ``"transpose"`` or ``"bilinear"``.
        norm: Normalisation name.
        deep_supervision: Heads on every top-row node.
        mode: ``"last"`` or ``"ensemble"``.
        prune_level: Eval-time pruning level (1..depth-1) or None.
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
        decoder_channels = decoder_channels or timm_decoder_channels(enc)
    block = lambda i, o: double_conv(i, o, norm=norm)  # noqa: E731
    return UNetPlusPlus(
        enc, num_classes, decoder_channels, block, upsample, deep_supervision, mode, prune_level
    )
