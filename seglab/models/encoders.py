"""The encoder contract, and the two encoders that honour it.

Every decoder in seglab depends on this contract only: ``channels`` and ``reductions`` (one entry
per returned feature map, shallow to deep), ``output_stride`` (the deepest reduction) and
``in_channels``; ``forward(x)`` returns the list of feature maps. This is the only module that
imports timm.
"""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Callable

import timm
import torch
from torch import nn

from seglab.data.io import load_weights_file
from seglab.models.blocks import double_conv

HUB_WEIGHTS = ("imagenet", "hub", "pretrained")


class Encoder(nn.Module):
    """Base of the contract. Subclasses set the four attributes and implement ``forward``.

    Attributes:
        channels: Channels of each returned feature map, shallow to deep.
        reductions: Effective stride of each map relative to the input (after dilation).
        output_stride: Stride of the deepest map (``reductions[-1]``).
        in_channels: Input image channels.
    """

    channels: list[int]
    reductions: list[int]
    output_stride: int
    in_channels: int

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


class PlainEncoder(Encoder):
    """The original U-Net contracting path: a block per level, 2x2 max-pool between levels.

    Args:
        in_channels: Input image channels.
        base_channels: Channels of the first level; doubled at each level (64 -> 1024).
        depth: Number of levels (5 in the paper).
        block: Factory ``(in, out) -> module`` for a level; the double 3x3 conv by default.
        norm: Normalisation inside the default block.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 64,
        depth: int = 5,
        block: Callable[[int, int], nn.Module] | None = None,
        norm: str | None = "bn",
    ) -> None:
        super().__init__()
        make = block or (lambda i, o: double_conv(i, o, norm=norm))
        self.in_channels = in_channels
        self.channels = [base_channels * 2**i for i in range(depth)]
        self.reductions = [2**i for i in range(depth)]
        self.output_stride = self.reductions[-1]
        ins = [in_channels, *self.channels[:-1]]
        self.blocks = nn.ModuleList(make(i, o) for i, o in zip(ins, self.channels))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Maps ``(B, in, H, W)`` to ``depth`` maps, the i-th ``(B, channels[i], H/2^i, W/2^i)``."""
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else self.pool(x))
            feats.append(x)
        return feats


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


class TimmEncoder(Encoder):
    """A timm backbone with ``features_only=True``.

    Args:
        name: timm model name (``resnet50``, ``xception65``, ``efficientnet_b0``, ...).
        in_channels: Input image channels; timm adapts the stem.
        output_stride: 8, 16 or 32; timm turns the strides of the last stages into dilation.
        weights: None or ``"random"`` for random init; a local ``.pth``/``.safetensors`` path;
            ``"imagenet"`` for hub weights (needs network access).
        out_indices: Which feature levels to return; all by default.
        **timm_kwargs: Passed to ``timm.create_model``.
    """

    def __init__(
        self,
        name: str,
        in_channels: int = 3,
        output_stride: int = 32,
        weights: str | None = None,
        out_indices: tuple[int, ...] | None = None,
        **timm_kwargs,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}.")
        if not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=3)
            raise ValueError(
                f"Unknown encoder {name!r}: not a timm model nor 'unet'. "
                f"Closest timm names: {close}. See timm.list_models()."
            )
        hub = weights in HUB_WEIGHTS
        if hub and not _hub_reachable():
            raise RuntimeError(
                f"Encoder {name!r}: weights={weights!r} asks for pretrained hub weights, but the "
                "Hugging Face hub cannot be reached (offline). Download the weights on a machine "
                "with network access (timm.create_model(name, pretrained=True) then "
                "torch.save(model.state_dict(), 'w.pth')) and pass the file: "
                "weights=/path/to/w.pth (or .safetensors)."
            )
        kwargs = dict(features_only=True, in_chans=in_channels, pretrained=hub, **timm_kwargs)
        if out_indices is not None:
            kwargs["out_indices"] = tuple(out_indices)
        if output_stride != 32:
            kwargs["output_stride"] = output_stride
        try:
            self.model = timm.create_model(name, **kwargs)
        except (TypeError, AssertionError, ValueError) as err:
            if output_stride == 32:
                raise
            from seglab.models.dilation import dilated_timm_encoder

            kwargs.pop("output_stride")
            self.model = dilated_timm_encoder(
                name, output_stride, err, create_fn=timm.create_model, **kwargs
            )
        self.in_channels = in_channels
        self.channels = list(self.model.feature_info.channels())
        self.reductions = list(self.model.feature_info.reduction())
        self.output_stride = self.reductions[-1]
        if weights not in (None, "random", "none", *HUB_WEIGHTS):
            self.load_weights(weights)

    def load_weights(self, path: str) -> None:
        """Loads a local weights file, adapting the stem to ``in_channels`` when needed."""
        state = load_weights_file(path)
        own = self.model.state_dict()
        matched = {}
        for key, value in state.items():
            for k in (key, key.removeprefix("encoder.").removeprefix("model.")):
                if k in own:
                    if own[k].shape != value.shape and value.ndim == 4 and own[k].ndim == 4:
                        value = timm.models.adapt_input_conv(own[k].shape[1], value)
                    if own[k].shape == value.shape:
                        matched[k] = value
                    break
        if not matched:
            raise ValueError(
                f"No tensor in {path} matches encoder {type(self.model).__name__}; is it a "
                "state dict of the same timm architecture?"
            )
        self.model.load_state_dict(matched, strict=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Maps ``(B, in, H, W)`` to one map per level, ``(B, channels[i], ~H/r_i, ~W/r_i)``."""
        return list(self.model(x))


def create_encoder(
    name: str = "unet",
    in_channels: int = 3,
    output_stride: int = 32,
    weights: str | None = None,
    **kwargs,
) -> Encoder:
    """Builds an encoder: ``"unet"`` for the plain contracting path, otherwise a timm name.

    Args:
        name: ``"unet"`` or a timm model name.
        in_channels: Input image channels.
        output_stride: Stride of the deepest map (timm encoders).
        weights: See :class:`TimmEncoder`; the plain encoder takes a local file only.
        **kwargs: ``base_channels``/``depth``/``block``/``norm`` for the plain encoder,
            ``out_indices`` and timm options otherwise.
    """
    if name == "unet":
        enc = PlainEncoder(in_channels=in_channels, **kwargs)
        if weights not in (None, "random", "none"):
            if weights in HUB_WEIGHTS:
                raise ValueError("The plain 'unet' encoder has no hub weights; pass a local file.")
            enc.load_state_dict(load_weights_file(weights))
        return enc
    return TimmEncoder(name, in_channels, output_stride, weights, **kwargs)
