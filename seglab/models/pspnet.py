"""PSPNet (Zhao et al., 2017): pyramid pooling on a dilated ResNet, with an auxiliary head.

The deepest map (``C`` channels, stride 8) is average-pooled to ``bin x bin`` grids (1, 2, 3, 6),
each reduced to ``C / len(bins)`` by a 1x1 conv with BatchNorm and ReLU, up-sampled and
concatenated with the map; a 3x3 conv (512), dropout and a 1x1 classifier follow. The auxiliary
head (3x3 conv 256, BN, ReLU, dropout, 1x1) supervises the stage before the last (ResNet's
layer3); the task weighs its loss (0.4 in the paper). The ``1 x 1`` bin takes BatchNorm as in
the paper, torchvision-style heads and smp, so training needs batches of at least 2 (a batch of
1 gets a clear error); ``pool_norm=None`` (the first round) or ``"gn"`` trains at batch 1.

Bins that divide whatever map they get (``pool_window=None``, mmseg's and smp's adaptive
pooling) pool cells several times larger on a whole image than on the crops a model trained on,
so its predictions depend on the image's size. By default (``pool_window="train"``) the cells
keep the size they had in training: the module records its training maps' size and bin ``b``
pools cells of ``size / b`` positions, so a larger image gets more of them. That is the paper's
network at the crop and beyond it: the released Caffe models fix their pooling kernels the same
way (60/30/20/10 on the 60x60 map of a 473 crop), and the paper's code only ever runs the
network on crops of that size (sliding windows at test time). ``pool_window`` in pixels gives
the window instead of recording it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seglab.models.blocks import ConvNormAct, averaging_matrix, pooled_conv, resize_to
from seglab.models.context_heads import (
    POOL_NORM_FIX,
    ContextModel,
    check_batch_statistics,
    context_encoder,
    make_aux_head,
)
from seglab.models.registry import Deviation, Fidelity, register


class PyramidPooling(nn.Module):
    """Pyramid pooling module: per bin, adaptive average pool -> 1x1 conv -> norm -> ReLU.

    Args:
        in_channels: Input channels ``C``.
        bins: Grid sizes.
        channels: Width of each bin branch; ``C // len(bins)`` by default.
        norm: Normalisation of the branches.
        pool_norm: Normalisation of the ``1 x 1`` bin (``norm`` by default).
        window: Cells of a fixed size: bin ``b`` pools cells of ``window / b`` positions of the
            map, ``h * b / window`` of them down the map (rounded half up, at least 1), and as
            many across. ``"train"``: the window is the training maps' size, recorded in the
            buffer ``train_map`` (saved with the weights) by each forward in training mode; until
            a training forward, or after training on more than one size, every map is divided
            into ``b x b`` cells, as with None (each input divided, the paper's formula).
    """

    def __init__(
        self,
        in_channels: int,
        bins: Sequence[int] = (1, 2, 3, 6),
        channels: int | None = None,
        norm: str | None = "bn",
        pool_norm: str | None = "bn",
        window: int | str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(window, str) and window != "train":
            raise ValueError(f"pool window {window!r}: give 'train', map positions or None.")
        if isinstance(window, int) and window < max(bins):
            raise ValueError(
                f"pool window of {window} map positions is smaller than bin {max(bins)}: its "
                f"cells would be under one position; use a window of at least {max(bins)}."
            )
        width = channels or in_channels // len(bins)
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(b),
                pooled_conv(in_channels, width, pool_norm)
                if b == 1
                else ConvNormAct(in_channels, width, 1, norm=norm),
            )
            for b in bins
        )
        self.bins, self.learns_window = list(bins), window == "train"
        self.window = (window, window) if isinstance(window, int) else None
        #: The training map size (see ``window``), mirrored so that no step reads the device.
        self.seen: tuple[int, ...] = (0, 0)  # (0, 0): no training forward yet; (-1, -1): several
        if self.learns_window:
            self.register_buffer("train_map", torch.zeros(2, dtype=torch.long))
        self.pool_bn = pool_norm in ("bn", "batchnorm")
        self.out_channels = in_channels + len(bins) * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(B, C, h, w)`` to ``(B, out_channels, h, w)``."""
        if self.learns_window and self.training and not torch.jit.is_tracing():
            self.record(x)
        outs = [x]
        for b, branch in zip(self.bins, self.branches):
            if b == 1 and self.training and self.pool_bn:
                check_batch_statistics(x[..., :1, :1], "PSPNet's 1x1 pyramid bin", POOL_NORM_FIX)
            outs.append(resize_to(branch[1](self.pool(x, b)), x))
        return torch.cat(outs, dim=1)

    def record(self, x: torch.Tensor) -> None:
        """Keeps the training map's size as the window; a second size turns the window off."""
        size = (int(x.shape[-2]), int(x.shape[-1]))
        if self.window == size or self.seen == (-1, -1):
            return
        self.seen = size if self.seen == (0, 0) else (-1, -1)
        self.window = self.seen if self.seen[0] > 0 else None
        self.train_map.copy_(torch.tensor(self.seen))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        """A checkpoint without ``train_map`` (older, or another window) loads as unrecorded;
        a module without the buffer ignores the key."""
        key = prefix + "train_map"
        if not self.learns_window:
            state_dict.pop(key, None)
        elif key not in state_dict:
            state_dict[key] = torch.zeros(2, dtype=torch.long)
        super()._load_from_state_dict(state_dict, prefix, *args)
        if self.learns_window:
            self.seen = tuple(int(v) for v in state_dict[key])
            self.window = self.seen if self.seen[0] > 0 else None

    def pool(self, x: torch.Tensor, b: int) -> torch.Tensor:
        """Bin ``b``'s average-pooled grid of ``x``: ``b x b`` cells, or cells of
        ``window / b`` positions with a window."""
        if self.window is None:  # the module: export swaps it for an ONNX-friendly one
            return self.branches[self.bins.index(b)][0](x)
        wh, ww = self.window
        if torch.jit.is_tracing():  # export: the grid from the traced size, not a constant
            h, w = torch._shape_as_tensor(x)[-2:]
            rows = averaging_matrix(cell_count(h, b, wh), h, x.transpose(-1, -2))
            cols = averaging_matrix(cell_count(w, b, ww), w, x)
            return rows @ x @ cols.transpose(0, 1)
        h, w = x.shape[-2:]
        return F.adaptive_avg_pool2d(x, [cell_count(h, b, wh), cell_count(w, b, ww)])


def cell_count(length: Any, b: int, window: int) -> Any:
    """Cells of bin ``b`` along a side of ``length`` positions: ``length * b / window`` rounded
    half up, at least 1 (integer arithmetic, so also on traced or symbolic sizes)."""
    n = (2 * length * b + window) // (2 * window)
    if isinstance(n, torch.Tensor):
        return torch.clamp(n, min=1)
    return torch.sym_max(n, 1)


class PSPHead(nn.Module):
    """Pyramid pooling, 3x3 conv-BN-ReLU, dropout, 1x1 classifier on the deepest map.

    Args:
        in_channels: Channels of the deepest map.
        num_classes: Output channels.
        bins: Pyramid grid sizes.
        channels: Width of the 3x3 conv (512).
        dropout: Dropout2d probability before the classifier.
        pool_norm: Normalisation of the ``1 x 1`` bin.
        window: Fixed pooling cells (map positions, or ``"train"``), see
            :class:`PyramidPooling`.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        bins: Sequence[int] = (1, 2, 3, 6),
        channels: int = 512,
        dropout: float = 0.1,
        pool_norm: str | None = "bn",
        window: int | str | None = None,
    ) -> None:
        super().__init__()
        self.ppm = PyramidPooling(in_channels, bins, pool_norm=pool_norm, window=window)
        self.block = ConvNormAct(self.ppm.out_channels, channels, 3)
        self.drop = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Maps the feature list to scores at the encoder's output stride."""
        return self.classifier(self.drop(self.block(self.ppm(feats[-1]))))


FIDELITY = Fidelity(
    reference="Zhao et al. 2017 (CVPR); official PyTorch code hszhao/semseg, PSPNet ResNet-50",
    settings={"num_classes": 150},
    params_source="none published for the official code's deep-stem ResNet-50",
    deviations=(
        Deviation(
            "timm's ResNet-50 with the 7x7 stem; the official ResNet has a deep stem of three "
            "3x3 convs (64-64-128)",
            "encoder_name",
            "timm has no 64-64-128 deep-stem ResNet; resnet50d is the nearest",
        ),
        Deviation(
            "BatchNorm in the 1x1 bin (the paper); the first round had none",
            "pool_norm=bn|gn|None",
        ),
        Deviation("auxiliary head on layer3, weight 0.4 in the task", "aux_head, aux_weight"),
        Deviation(
            "all encoder levels, the last two dilated (the paper); smp's PSPNet stops after layer2",
            "encoder_depth=None|3",
        ),
        Deviation(
            "cells of the training maps' size on any input (the released Caffe models' fixed "
            "kernels; the paper's code runs the network on crops only); None divides each input "
            "(mmseg's and smp's adaptive bins)",
            "pool_window=train|None|pixels",
            "a model trained on crops pools whole images as it pooled its crops",
        ),
    ),
)


#: Up to version 3 the bins divided each input (``pool_window=None``); version 1 had no bin norm.
PSP_LEGACY = {1: {"pool_norm": None}, 3: {"pool_window": None}}


@register("pspnet", legacy=PSP_LEGACY, fidelity=FIDELITY)
def build_pspnet(
    num_classes: int,
    in_channels: int = 3,
    encoder_name: str = "resnet50",
    weights: str | None = None,
    output_stride: int = 8,
    bins: Sequence[int] = (1, 2, 3, 6),
    channels: int = 512,
    dropout: float = 0.1,
    aux_head: bool = True,
    pool_norm: str | None = "bn",
    encoder_depth: int | None = None,
    pool_window: int | str | None = "train",
) -> ContextModel:
    """PSPNet on a dilated encoder; ``aux_head`` supervises the stage before the last.

    ``pool_norm`` normalises the ``1 x 1`` bin (BatchNorm, the paper's; None or ``"gn"`` train
    at batch 1). ``encoder_depth`` keeps that many encoder levels and does not build the rest:
    None (the paper) keeps all, dilated to ``output_stride``; 3 is smp's PSPNet (ResNet up to
    layer2, stride 8 without dilation, about a tenth of the training FLOPs on ResNet-18 at 128
    px), whose auxiliary head then reads layer1. ``pool_window`` fixes the pyramid cells' size,
    so whole images are pooled as the crops were (see the module docstring): ``"train"`` (the
    default) takes the training maps' size, pixels (a multiple of the deepest map's stride)
    give it; None divides each input.
    """
    encoder = context_encoder(encoder_name, in_channels, output_stride, weights, encoder_depth)
    window = pool_window
    if pool_window not in (None, "train") and type(pool_window) is not int:
        raise ValueError(
            f"pool_window={pool_window!r}: give 'train' (the training maps' size), pixels (a "
            f"multiple of the deepest map's stride {encoder.reductions[-1]}) or None."
        )
    if isinstance(pool_window, int):
        stride = encoder.reductions[-1]
        if pool_window <= 0 or pool_window % stride:
            raise ValueError(
                f"pool_window={pool_window}: give a positive multiple of the deepest map's "
                f"stride {stride} (the training crop, e.g. {stride * 16}), or None."
            )
        window = pool_window // stride
    head = PSPHead(encoder.channels[-1], num_classes, bins, channels, dropout, pool_norm, window)
    return ContextModel(encoder, head, make_aux_head(aux_head, encoder, num_classes))
