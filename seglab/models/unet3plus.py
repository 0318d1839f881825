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
the bottleneck, ``ModelOutput.cls`` ``(B, 1)`` logits in train mode, whose hard decision
suppresses the foreground of images it calls empty (:func:`seglab.models.heads.cgm_gate`):

* ``cgm="paper"`` (or ``True``): as in the paper, every output, the side outputs included, is
  multiplied by the decision, in training as at inference. On an image called empty the
  segmentation heads get no gradient; the decision itself has none either, the CGM learns from
  its own BCE (the task's ``cls_weight`` term).
* ``cgm="eval"``: seglab's variant (the first round's ``cgm=True``): training outputs are not
  gated, so the segmentation heads learn from every image, also those the CGM misjudges; only
  the eval-mode output is gated.

With the plain encoder (64 base channels), 3 input channels, 1 class and neither flag the
network has the paper's 26.97M parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from seglab.models.blocks import ConvNormAct, resize_to
from seglab.models.encoders import Encoder
from seglab.models.family_encoder import family_encoder
from seglab.models.heads import ClassificationGuidedModule, SegmentationHead, cgm_gate
from seglab.models.output import ModelOutput
from seglab.models.registry import Deviation, Fidelity, register

#: ``cgm`` values: off, the paper's gate of every output, seglab's eval-only gate.
CGM_MODES = (None, "paper", "eval")


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
        cgm: Classification-guided module: None (off), ``"paper"`` or ``"eval"`` (see the
            module docstring).
    """

    def __init__(
        self,
        encoder: Encoder,
        num_classes: int,
        cat_channels: int = 64,
        norm: str | None = "bn",
        deep_supervision: bool = False,
        cgm: str | None = None,
    ) -> None:
        super().__init__()
        if cgm not in CGM_MODES:
            raise ValueError(f"cgm must be one of {CGM_MODES}, got {cgm!r}.")
        self.encoder = encoder
        self.deep_supervision, self.cgm_mode = deep_supervision, cgm
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
        side = []
        if self.side_heads is not None:
            side = [head(d, x) for head, d in zip(self.side_heads, dec[1:])]
        if cls is not None and self.cgm_mode == "paper":
            logits, side = cgm_gate(logits, cls), [cgm_gate(s, cls) for s in side]
        if not side and cls is None:
            return logits
        return ModelOutput(logits=logits, side=side, cls=cls)

    def eval_logits(self, output: ModelOutput) -> torch.Tensor:
        """What eval mode returns, from a full-graph (all heads) ``ModelOutput`` of the same input.

        Lets a caller that needs the side outputs too run the network once.
        """
        if output.cls is None or self.cgm_mode == "paper":
            return output.logits  # ungated without CGM; already gated in the paper's mode
        return cgm_gate(output.logits, output.cls)


UNET3PLUS_FIDELITY = Fidelity(
    reference=(
        "Huang et al. 2020, UNet 3+ (ICASSP), Table 1; official code ZJUGiveLab/UNet-Version "
        "(UNet_3Plus, UNet_3Plus_DeepSup_CGM)"
    ),
    settings={"encoder_name": "unet", "in_channels": 3, "num_classes": 1},
    params=26_970_000,
    params_source="Table 1 and the official UNet_3Plus(in_channels=3, n_classes=1): 26.97M; "
    "seglab: 26,965,249",
    deviations=(
        Deviation(
            "full-scale deep supervision and the CGM are off by default (the 26.97M network); "
            "the paper's full model turns both on",
            "deep_supervision=true, cgm=paper",
            "the plain network is the reference count and the cheaper default",
        ),
        Deviation(
            "the CGM predicts one 'has foreground' logit with BCE; the official code has two "
            "channels, softmax and argmax (same decision, 1,025 fewer parameters at 1024 ch)",
            "-",
            "the decision is a threshold at 0 of one logit",
        ),
        Deviation(
            "with cgm=paper a gated output's foreground is suppressed (probability x 0); the "
            "official code multiplies the pre-sigmoid map by 0, i.e. probability 0.5",
            "-",
            "a gated image must read as empty under any threshold or argmax",
        ),
        Deviation(
            "available, not the default: seglab's eval-only gate (training outputs ungated, "
            "the eval output gated; the first round's cgm=true)",
            "cgm=eval",
            "the segmentation heads learn from every image, also those the CGM misjudges",
        ),
        Deviation(
            "available, not the default: side losses averaged (the default sums them, as the "
            "paper sums its five hybrid losses)",
            "UNetFamilyTask side_loss=mean",
            "a loss scale independent of the number of heads",
        ),
    ),
)


@register("unet3plus", fidelity=UNET3PLUS_FIDELITY)
def build_unet3plus(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "unet",
    weights: str | None = None,
    output_stride: int | None = None,
    base_channels: int | None = None,
    depth: int | None = None,
    cat_channels: int = 64,
    norm: str | None = "bn",
    deep_supervision: bool = False,
    cgm: bool | str | None = False,
) -> UNet3Plus:
    """Builds UNet 3+.

    Args:
        num_classes: Logit channels.
        in_channels: Input image channels.
        encoder_name: ``"unet"`` (paper: 64-128-256-512-1024) or a timm name.
        weights: Encoder weights (see ``create_encoder``).
        output_stride: Deepest stride (None: the encoder's own; see ``family_encoder``).
        base_channels: First-level width of the plain encoder (None: 64).
        depth: Plain-encoder levels (None: 5).
        cat_channels: Branch width (64; the fused width is ``depth * cat_channels``).
        norm: Normalisation name.
        deep_supervision: Full-scale deep supervision side heads.
        cgm: Classification-guided module: False (off), ``"paper"`` or True (the paper's gate
            of every output, in training too) or ``"eval"`` (seglab's eval-only gate).
    """
    modes = {False: None, None: None, True: "paper", "paper": "paper", "eval": "eval"}
    if not isinstance(cgm, bool | str | None) or cgm not in modes:
        raise ValueError(f"unet3plus: cgm={cgm!r}; choose false, 'paper' (or true) or 'eval'.")
    enc = family_encoder(
        "unet3plus",
        encoder_name,
        in_channels,
        weights,
        output_stride,
        base_channels,
        depth,
        default_base=64,
        norm=norm,
    )
    return UNet3Plus(enc, num_classes, cat_channels, norm, deep_supervision, modes[cgm])
