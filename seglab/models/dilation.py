"""Dilating a backbone that timm cannot build at a smaller output stride (VGG, DenseNet).

The rule is the one timm and DeepLab apply to ResNets: every down-sampling layer whose output
would exceed the target stride keeps stride 1 (a non-overlapping pooling becomes an identity),
and every convolution after it is dilated by the stride it lost, ``nominal / effective``. For
DenseNet-161 at stride 8 this drops the poolings of the last two transitions and dilates
dense blocks 3 and 4 by 2 and 4, as in DenseASPP.

The stride of each layer is measured, not guessed: a twin of the network is built on the meta
device (no memory, no compute) and run once with forward hooks, so the rule works for any layer
order and any branch structure. This module never imports timm; the encoder passes its factory.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

_STRIDED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
_TRACE_SIZE = 512


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[-1]))


def measure_strides(model: nn.Module, in_channels: int = 3) -> dict[str, tuple[int, int]]:
    """Input reduction and stride of every conv and pooling layer, from one forward pass.

    Args:
        model: A network on the meta device (it is run once on a ``512 x 512`` meta tensor).
        in_channels: Channels of the input image.

    Returns:
        ``{module_name: (input_reduction, stride)}`` for layers that ran, first call only.
    """
    found: dict[str, tuple[int, int]] = {}
    handles = []

    def hook(name: str) -> Callable[..., None]:
        def record(_: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if name not in found:
                h_in, h_out = inputs[0].shape[-2], output.shape[-2]
                found[name] = (round(_TRACE_SIZE / h_in), max(1, round(h_in / h_out)))

        return record

    for name, module in model.named_modules():
        if isinstance(module, _STRIDED):
            handles.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model(torch.empty(1, in_channels, _TRACE_SIZE, _TRACE_SIZE, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return found


def _dilate_conv(conv: nn.Conv2d, factor: int) -> None:
    """Sets stride 1 and multiplies the dilation, keeping 'same' padding."""
    k, d, p = _pair(conv.kernel_size), _pair(conv.dilation), _pair(conv.padding)
    conv.stride = (1, 1)
    if k == (1, 1) or factor == 1:
        return
    same = isinstance(conv.padding, tuple) and all(p[i] == d[i] * (k[i] - 1) // 2 for i in range(2))
    conv.dilation = (d[0] * factor, d[1] * factor)
    if same:
        conv.padding = tuple(conv.dilation[i] * (k[i] - 1) // 2 for i in range(2))


def dilate_to_stride(
    model: nn.Module,
    output_stride: int,
    strides: dict[str, tuple[int, int]],
) -> int:
    """Turns the strides beyond ``output_stride`` into dilation, in place.

    Args:
        model: The network to change.
        output_stride: Target stride of the deepest map.
        strides: :func:`measure_strides` of an identical network.

    Returns:
        How many down-sampling layers were removed.
    """
    removed = 0
    for name, (reduction, stride) in strides.items():
        module = model.get_submodule(name)
        factor = reduction // min(reduction, output_stride)  # stride lost before this layer
        strided_out = stride > 1 and reduction * stride > output_stride
        if isinstance(module, nn.Conv2d):
            if strided_out or factor > 1:
                _dilate_conv(module, factor)
            removed += strided_out
        elif strided_out:
            k, s = _pair(module.kernel_size), _pair(module.stride)
            if k == s:  # non-overlapping pooling: nothing left to do at stride 1
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
            else:
                module.stride = 1
            removed += 1
    return removed


def dilated_timm_encoder(
    name: str,
    output_stride: int,
    err: Exception,
    create_fn: Callable[..., nn.Module] | None = None,
    **kwargs,
) -> nn.Module:
    """Builds a timm feature extractor and dilates it to ``output_stride``.

    Args:
        name: timm model name (``vgg16``, ``densenet161``, ...).
        output_stride: 8 or 16.
        err: The error timm raised when asked for ``output_stride`` directly.
        create_fn: ``timm.create_model``, passed in by the encoder (timm is imported there only).
        **kwargs: The encoder's ``create_fn`` arguments (``features_only=True``, ``in_chans``...).

    Returns:
        The feature extractor, whose ``feature_info.reduction()`` reports the effective strides.

    Raises:
        ValueError: The network has no down-sampling layer that dilation can replace.
    """
    if create_fn is None:
        raise ValueError(f"Cannot dilate {name!r}: no model factory given.") from err
    model = create_fn(name, **kwargs)
    with torch.device("meta"):
        twin = create_fn(name, **{**kwargs, "pretrained": False})
    strides = measure_strides(twin, kwargs.get("in_chans", 3))
    if dilate_to_stride(model, output_stride, strides) == 0:
        raise ValueError(
            f"Encoder {name!r} supports no output_stride={output_stride}: timm refused it "
            f"({err}) and no pooling or strided convolution could be turned into dilation."
        ) from err
    for info in model.feature_info.info:
        info["reduction"] = min(info["reduction"], output_stride)
    return model
