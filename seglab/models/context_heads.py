"""What the context models share: the encoder + head wrapper, the auxiliary head, atrous helpers.

A head maps the encoder's feature list to class scores at some stride; :class:`ContextModel`
up-samples them to the input and, in train mode with an auxiliary head, also returns the
auxiliary logits. The auxiliary loss weight belongs to the task, never to the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seglab.models.blocks import ConvNormAct, centre_tap_init_, resize_to
from seglab.models.encoders import Encoder, create_encoder
from seglab.models.output import ModelOutput
from seglab.models.registry import Deviation

#: The fix for a batch of 1 at a BatchNorm after global pooling (``pool_norm`` option).
POOL_NORM_FIX = (
    "or set the model option pool_norm: null (no normalisation in the globally pooled branch, "
    "the first round's) or 'gn'"
)


def check_batch_statistics(x: torch.Tensor, where: str, fix: str) -> None:
    """Raises a clear error where a training BatchNorm would see one value per channel.

    Args:
        x: The map the BatchNorm normalises (``(B, C, h, w)``).
        where: The layer, for the message.
        fix: The option-specific fix, appended to the batch-size one.
    """
    if x.shape[0] * x.shape[-2] * x.shape[-1] == 1:
        raise ValueError(
            f"{where}: a training batch of 1 reaches a BatchNorm over a 1x1 map, where it has "
            "a single value per channel (BatchNorm needs more than one in training). Train "
            "with batch_size >= 2 (data.drop_last: true, the default, drops an incomplete last "
            f"batch), {fix}."
        )


class AuxHead(nn.Module):
    """PSPNet's auxiliary classifier: 3x3 conv-BN-ReLU, dropout, 1x1 conv to class scores.

    Args:
        in_channels: Channels of the supervised feature map (ResNet stage 3: 1024).
        num_classes: Output channels.
        channels: Hidden width (256 in PSPNet).
        dropout: Dropout2d probability before the classifier.
    """

    def __init__(
        self, in_channels: int, num_classes: int, channels: int = 256, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.block = ConvNormAct(in_channels, channels, 3)
        self.drop = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(B, in, h, w)`` to ``(B, num_classes, h, w)``."""
        return self.classifier(self.drop(self.block(x)))


ATROUS_INITS = ("centre", "random")
#: The deviation every head with atrous convolutions shares (``seglab models --fidelity``).
ATROUS_DEVIATION = Deviation(
    "dilated convolutions of the head start with only their centre tap (off-centre taps 0)",
    "atrous_init=random (the paper's initialisation)",
    "on training crops whose deepest map is smaller than a rate, the off-centre taps read only "
    "padding, get no gradient and keep random values that the BatchNorms never saw; on a whole "
    "image they then inject noise that collapses whole-image predictions (issue 15)",
)


class ContextModel(nn.Module):
    """Encoder, a head on the feature list, optional auxiliary head on one level.

    Args:
        encoder: Any encoder honouring the contract.
        head: Module mapping ``list[Tensor]`` (shallow to deep) to class scores.
        aux_head: Module mapping one feature map to class scores, or None.
        aux_level: Index into the feature list supervised by ``aux_head`` (-2: the stage before
            the last, ResNet's layer3).
        atrous_init: ``"centre"`` (seglab's default) starts every dilated convolution of the
            head (any conv with a tap beyond distance 1: ``centre_tap_init_``) with its
            off-centre taps at 0, so taps that training crops never reach stay 0
            and a crop-trained model scores a whole image as its tiles; ``"random"`` keeps
            PyTorch's initialisation of all taps (the papers').
    """

    def __init__(
        self,
        encoder: Encoder,
        head: nn.Module,
        aux_head: nn.Module | None = None,
        aux_level: int = -2,
        atrous_init: str = "centre",
    ) -> None:
        super().__init__()
        if atrous_init not in ATROUS_INITS:
            raise ValueError(f"atrous_init must be one of {ATROUS_INITS}, got {atrous_init!r}.")
        self.encoder = encoder
        self.head = head
        if atrous_init == "centre":
            centre_tap_init_(head)  # atrous taps that crops never reach stay 0 (size dependence)
        self.aux_head = aux_head
        self.aux_level = aux_level
        self._has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.modules())

    def forward(self, x: torch.Tensor) -> torch.Tensor | ModelOutput:
        """Logits ``(B, num_classes, H, W)``; ``ModelOutput(logits, aux=...)`` when training
        with an auxiliary head."""
        if self.training and self._has_bn:  # before the encoder, whose own BatchNorms fail
            stride = self.encoder.output_stride
            deepest = x[..., ::stride, ::stride]  # the deepest map's size, ceil(H / stride)
            fix = f"or train on crops of at least {2 * stride} pixels a side"
            check_batch_statistics(deepest, "the map at the encoder's output stride", fix)
        feats = self.encoder(x)
        logits = resize_to(self.head(feats), x)
        if self.training and self.aux_head is not None:
            aux = resize_to(self.aux_head(feats[self.aux_level]), x)
            return ModelOutput(logits, aux=aux)
        return logits


def make_aux_head(
    enabled: bool, encoder: Encoder, num_classes: int, level: int = -2
) -> AuxHead | None:
    """An :class:`AuxHead` on ``encoder.channels[level]`` when ``enabled``, else None."""
    return AuxHead(encoder.channels[level], num_classes) if enabled else None


def scale_rates(rates: Sequence[int], output_stride: int, base_stride: int) -> list[int]:
    """Atrous rates chosen at ``base_stride``, rescaled to ``output_stride`` (at least 1).

    DeepLab v3's (6, 12, 18) at stride 16 become (12, 24, 36) at stride 8 and (3, 6, 9) at 32.
    """
    return [max(1, int(r * base_stride / output_stride + 0.5)) for r in rates]


def level_with_reduction(encoder: Encoder, reduction: int) -> int:
    """Index of the deepest encoder level whose reduction is at most ``reduction``."""
    candidates = [i for i, r in enumerate(encoder.reductions) if r <= reduction]
    if not candidates:
        raise ValueError(
            f"Encoder has no level at reduction <= {reduction}; reductions: {encoder.reductions}."
        )
    return candidates[-1]


def apply_multi_grid(encoder: Encoder, grid: Sequence[int]) -> bool:
    """DeepLab v3 multi-grid: the i-th block of ResNet's last stage gets rate ``base * grid[i]``.

    ``base`` is the stage's own dilation (2 at output stride 16, 4 at 8, 1 at 32), read from its
    last block. Every 3x3 convolution of a block (not of its shortcut) is changed.

    Args:
        encoder: A timm ResNet-family encoder (anything with ``model.layer4`` blocks).
        grid: Unit rates, cycled over the blocks; ``(1, 2, 4)`` in the paper.

    Returns:
        Whether the encoder was a ResNet and was changed.
    """
    stage = getattr(getattr(encoder, "model", None), "layer4", None)
    if not isinstance(stage, nn.Sequential) or len(stage) == 0:
        return False

    def convs3x3(block: nn.Module) -> list[nn.Conv2d]:
        return [
            m
            for name, m in block.named_modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and "downsample" not in name
        ]

    base = max(c.dilation[0] for c in convs3x3(stage[-1]))
    for i, block in enumerate(stage):
        rate = base * grid[i % len(grid)]
        for conv in convs3x3(block):
            conv.dilation, conv.padding = (rate, rate), (rate, rate)
    return True


def context_encoder(
    name: str,
    in_channels: int,
    output_stride: int,
    weights: str | None,
    depth: int | None = None,
) -> Encoder:
    """A timm encoder at ``output_stride``, checked: ``encoder.reductions[-1] == output_stride``.

    Args:
        name: timm model name.
        in_channels: Input image channels.
        output_stride: Stride of the deepest map (timm dilates the stages beyond it).
        weights: See :class:`~seglab.models.encoders.TimmEncoder`.
        depth: Number of feature levels kept (smp's ``encoder_depth``); the stages after the
            last kept level are not built. None keeps all.

    Raises:
        ValueError: ``depth`` outside ``1..levels``, or the deepest kept level is not at
            ``output_stride``.
    """
    if depth is None:
        encoder = create_encoder(name, in_channels, output_stride, weights)
    else:
        with torch.device("meta"):  # only to count the levels
            levels = len(create_encoder(name, in_channels, output_stride, None).channels)
        if not 1 <= depth <= levels:
            raise ValueError(
                f"encoder_depth={depth}: encoder {name!r} has {levels} feature levels; "
                f"choose 1..{levels} (None keeps all)."
            )
        kept = tuple(range(depth))
        encoder = create_encoder(name, in_channels, output_stride, weights, out_indices=kept)
    if encoder.reductions[-1] != output_stride:
        hint = f"; with encoder_depth={depth} set output_stride={encoder.reductions[-1]}" * (
            depth is not None
        )
        raise ValueError(
            f"Encoder {name!r} reaches output stride {encoder.reductions[-1]}, not the "
            f"requested {output_stride} (reductions {encoder.reductions}){hint}."
        )
    return encoder
