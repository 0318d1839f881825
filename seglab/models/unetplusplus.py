"""UNet++ (Zhou et al., 2018/2019): nested, densely connected skip pathways.

Node ``X(i, j)`` (row ``i`` = encoder level, column ``j``) is the encoder map for ``j == 0``;
otherwise a level block applied to ``cat(X(i, 0), ..., X(i, j-1), up(X(i+1, j-1)))``. The grid
is built in loops for any encoder depth ``D``; the top row ``X(0, 1..D-1)`` carries the heads.

* ``deep_supervision=True`` puts a 1x1 head on every top-row node; in train mode the model
  returns ``ModelOutput(logits=head(X(0,D-1)), side=[head(X(0,1)), ..., head(X(0,D-2))])``.
* ``mode="ensemble"`` averages all top-row heads in eval mode (``"last"`` uses the deepest).
  As in the paper (whose heads end in a sigmoid), the heads' probabilities are averaged:
  ``ensemble_average="sigmoid"`` for one class, ``"softmax"`` for several (the default picks by
  ``num_classes``; multilabel models want ``"sigmoid"``); the average is returned as logits
  (``logit`` / ``log`` of it), so thresholds and argmax read it as they read any logits.
  ``ensemble_average="logits"`` averages the logits instead (the first round's ensemble).
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
from seglab.models.encoders import Encoder, PlainEncoder
from seglab.models.family_encoder import family_encoder, refuse_unset
from seglab.models.output import ModelOutput
from seglab.models.registry import register
from seglab.models.unet import (
    HALF_RESOLUTION_LEGACY,
    BlockFactory,
    decoder_scales,
    skipless_levels,
    timm_decoder_channels,
    up_layer,
)
from seglab.models.unetplusplus_fidelity import UNETPLUSPLUS_FIDELITY

MODES = ("last", "ensemble")
ENSEMBLE_AVERAGES = ("sigmoid", "softmax", "logits")


def average_heads(outs: Sequence[torch.Tensor], how: str) -> torch.Tensor:
    """Averages head logits ``(B, C, H, W)`` as probabilities (``sigmoid``/``softmax``) or as
    ``logits``; probabilities come back as logits (``logit(p)``, ``log(p)``), in float32 math.
    """
    if how == "logits":
        return torch.stack(list(outs)).mean(0)
    stacked = torch.stack(list(outs)).float()
    if how == "softmax":
        mean = stacked.softmax(dim=2).mean(0)
        return mean.clamp_min(1e-12).log().to(outs[0].dtype)
    return torch.logit(torch.sigmoid(stacked).mean(0), eps=1e-7).to(outs[0].dtype)


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
        ensemble_average: ``"sigmoid"``, ``"softmax"`` or ``"logits"``: what ``"ensemble"``
            averages (see the module docstring).
        full_resolution: Where the top row is coarser than the input (timm encoders: stride
            2), one shared stack of skip-less levels takes every top-row node to stride 1
            before its head; ``decoder_channels`` then ends with their widths.
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
        ensemble_average: str = "softmax",
        full_resolution: bool = False,
    ) -> None:
        super().__init__()
        chans, red = list(encoder.channels), list(encoder.reductions)
        self.depth = d = len(chans)
        scales = decoder_scales(red, full_resolution)
        widths = list(decoder_channels)[::-1] if decoder_channels else chans[:-1]
        if len(widths) != d - 1 + len(scales):
            extra = f" plus {len(scales)} skip-less (full_resolution)" if scales else ""
            raise ValueError(f"decoder_channels needs {d - 1}{extra} entries, got {len(widths)}.")
        tail_widths, widths = widths[: len(scales)][::-1], widths[len(scales) :]
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        if mode == "ensemble" and not deep_supervision:
            raise ValueError("mode='ensemble' needs deep_supervision=True.")
        if ensemble_average not in ENSEMBLE_AVERAGES:
            raise ValueError(
                f"ensemble_average must be one of {ENSEMBLE_AVERAGES}, got {ensemble_average!r}."
            )
        self.encoder = encoder
        self.deep_supervision, self.mode = deep_supervision, mode
        self.ensemble_average = ensemble_average
        self.ups, self.nodes = nn.ModuleDict(), nn.ModuleDict()
        for j in range(1, d):
            for i in range(d - j):
                below = chans[i + 1] if j == 1 else widths[i + 1]
                self.ups[f"{i}_{j}"] = up_layer(below, widths[i], red[i + 1] // red[i], upsample)
                self.nodes[f"{i}_{j}"] = block(chans[i] + j * widths[i], widths[i])
        head_cols = range(1, d) if deep_supervision else [d - 1]
        self.tail = skipless_levels(widths[0], tail_widths, scales, block, upsample)
        head_in = tail_widths[-1] if scales else widths[0]
        self.heads = nn.ModuleDict({str(j): nn.Conv2d(head_in, num_classes, 1) for j in head_cols})
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
        outs = [resize_to(self.heads[str(j)](self.tail(grid[0, j])), x) for j in cols]
        if training_sides:
            return ModelOutput(logits=outs[-1], side=outs[:-1])
        return self.combine(outs)

    def combine(self, outs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Eval-mode logits from the heads computed (the ensemble, or the one head)."""
        return average_heads(outs, self.ensemble_average) if len(outs) > 1 else outs[-1]

    def eval_logits(self, output: ModelOutput) -> torch.Tensor:
        """What eval mode returns, from a full-graph (all heads) ``ModelOutput`` of the same input.

        Lets a caller that needs the side outputs too run the network once.
        """
        if self.mode == "ensemble":
            return self.combine([*output.side, output.logits])
        return output.logits


@register("unetplusplus", legacy=HALF_RESOLUTION_LEGACY, fidelity=UNETPLUSPLUS_FIDELITY)
def build_unetplusplus(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "unet",
    weights: str | None = None,
    output_stride: int | None = None,
    base_channels: int | None = None,
    depth: int | None = None,
    decoder_channels: Sequence[int] | None = None,
    upsample: str = "transpose",
    norm: str | None = "bn",
    deep_supervision: bool = False,
    mode: str = "last",
    prune_level: int | None = None,
    ensemble_average: str | None = None,
    full_resolution: bool = True,
) -> UNetPlusPlus:
    """Builds UNet++.

    Args:
        num_classes: Logit channels.
        in_channels: Input image channels.
        encoder_name: ``"unet"`` (paper; 32 base channels) or a timm name.
        weights: Encoder weights (see ``create_encoder``).
        output_stride: Deepest stride (None: the encoder's own; see ``family_encoder``).
        base_channels: First-level width of the plain encoder (None: 32, the UNet++ paper's).
        depth: Plain-encoder levels (None: 5).
        decoder_channels: Row widths, deep to shallow; default: encoder widths (plain) or
            256-128-64-32-16 (timm: rows 256..32, then the skip-less level's 16; 128-64-32-16
            without ``full_resolution``).
        upsample: ``"transpose"`` or ``"bilinear"``.
        norm: Normalisation name.
        deep_supervision: Heads on every top-row node.
        mode: ``"last"`` or ``"ensemble"``.
        prune_level: Eval-time pruning level (1..depth-1) or None.
        ensemble_average: With ``mode="ensemble"``: ``"sigmoid"`` / ``"softmax"`` (average
            probabilities, the paper's; None picks sigmoid for one class, softmax otherwise) or
            ``"logits"``.
        full_resolution: Take a timm encoder's top row (stride 2) on to stride 1 with a
            skip-less level before the heads; False resizes the stride-2 logits (the first
            round). The plain encoder's top row already is at stride 1.
    """
    if mode != "ensemble":
        refuse_unset(
            "unetplusplus",
            f"with mode={mode!r} (it needs mode='ensemble')",
            ensemble_average=ensemble_average,
        )
    average = ensemble_average or ("sigmoid" if num_classes == 1 else "softmax")
    enc = family_encoder(
        "unetplusplus",
        encoder_name,
        in_channels,
        weights,
        output_stride,
        base_channels,
        depth,
        default_base=32,
        norm=norm,
    )
    if encoder_name != "unet":
        decoder_channels = decoder_channels or timm_decoder_channels(enc, 16, full_resolution)
    block = lambda i, o: double_conv(i, o, norm=norm)  # noqa: E731
    return UNetPlusPlus(
        enc,
        num_classes,
        decoder_channels,
        block,
        upsample,
        deep_supervision,
        mode,
        prune_level,
        average,
        full_resolution,
    )
