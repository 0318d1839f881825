"""Shared building blocks: conv-norm-act, depthwise-separable conv, resizing, init helpers.

Every decoder in seglab is composed from these, so that a change of normalisation or activation
is one argument, not a new class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_NORMS: dict[str, Callable[[int], nn.Module]] = {
    "bn": nn.BatchNorm2d,
    "batchnorm": nn.BatchNorm2d,
    "gn": lambda c: nn.GroupNorm(min(32, c) if c % min(32, c) == 0 else 1, c),
    "in": lambda c: nn.InstanceNorm2d(c, affine=True),
}
_ACTS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "swish": lambda: nn.SiLU(inplace=True),
    "gelu": nn.GELU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
}


def make_norm(norm: str | None, channels: int) -> nn.Module:
    """Builds a normalisation layer by name (`bn`, `gn`, `in`) or an identity for None."""
    if norm is None:
        return nn.Identity()
    if norm not in _NORMS:
        raise ValueError(f"Unknown norm {norm!r}; choose one of {sorted(_NORMS)} or None.")
    return _NORMS[norm](channels)


def pooled_conv(in_channels: int, out_channels: int, norm: str | None) -> ConvNormAct:
    """1x1 conv -> norm -> ReLU for a pooled map (a ``1 x 1`` pyramid bin, image pooling).

    On a ``1 x 1`` map a GroupNorm group of one channel holds a single value and normalises it
    to 0, so the branch would put out a constant whatever the image (and raise at batch 1);
    ``"gn"`` here gives every group at least two channels (at most 32 groups).
    """
    block = ConvNormAct(in_channels, out_channels, 1, norm=norm)
    gn = block[1]
    if isinstance(gn, nn.GroupNorm) and gn.num_channels // gn.num_groups < 2:
        c = gn.num_channels
        if c < 2:
            raise ValueError(
                f"norm='gn' on a pooled map of {c} channel normalises it to 0; use norm=None."
            )
        block[1] = nn.GroupNorm(max(g for g in range(1, min(32, c // 2) + 1) if c % g == 0), c)
    return block


def make_act(act: str | None) -> nn.Module:
    """Builds an activation by name (`relu`, `relu6`, `silu`, `gelu`, ...) or an identity."""
    if act is None:
        return nn.Identity()
    if act not in _ACTS:
        raise ValueError(f"Unknown activation {act!r}; choose one of {sorted(_ACTS)} or None.")
    return _ACTS[act]()


def averaging_matrix(cells: Any, length: Any, like: torch.Tensor) -> torch.Tensor:
    """The ``(cells, L)`` matrix of adaptive average pooling along ``like``'s last side of
    ``length`` positions: cell ``i`` of ``n`` averages ``[floor(i L / n), ceil((i + 1) L / n))``,
    PyTorch's rule. ``cells`` and ``length`` may be traced size tensors or symbolic sizes, so
    exported models keep the pooling dynamic (PSPNet's bins and fixed-size cells)."""
    if isinstance(length, torch.Tensor):
        length = length.to(torch.float32)
    i = torch.arange(cells, device=like.device, dtype=torch.float32)
    start = torch.floor(i * length / cells)
    end = torch.ceil((i + 1) * length / cells)
    pos = torch.arange(like.shape[-1], device=like.device, dtype=torch.float32)
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
    return (inside.to(like.dtype) / (end - start)[:, None].to(like.dtype)).to(like.dtype)


class ReachConv2d(nn.Conv2d):
    """A stride-1 ``nn.Conv2d`` with "same" padding that leaves out the taps reading only padding.

    Tap ``j`` of a ``k``-tap kernel at dilation ``d`` lies ``(j - k // 2) * d`` positions from its
    output; on a map of ``n`` positions along that axis, a tap at ``n`` or more positions only
    ever reads the zero padding, adds exactly zero and gets exactly zero gradient. The forward
    convolves with the taps that reach the map: the same output and gradients for less work (a
    rate-12 ASPP branch on the ``8 x 8`` map of a 128-pixel crop is its centre tap's ``1 x 1``
    conv). Same parameters as ``nn.Conv2d``; traced (export) or compiled, it is the full conv.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``nn.Conv2d.forward``, restricted to the taps that reach ``x``."""
        full = [k // 2 for k in self.kernel_size]
        reach = [min(c, (n - 1) // d) for c, n, d in zip(full, x.shape[-2:], self.dilation)]
        if (
            reach == full
            or torch.jit.is_tracing()
            or torch.compiler.is_compiling()
            or self.stride != (1, 1)
            or self.padding_mode != "zeros"
            or list(self.padding) != [c * d for c, d in zip(full, self.dilation)]
        ):
            return super().forward(x)
        (ch, cw), (mh, mw), (dh, dw) = full, reach, self.dilation
        weight = self.weight[:, :, ch - mh : ch + mh + 1, cw - mw : cw + mw + 1]
        return F.conv2d(x, weight, self.bias, 1, (mh * dh, mw * dw), self.dilation, self.groups)


class ConvNormAct(nn.Sequential):
    """Conv2d -> norm -> activation, with 'same' padding for any kernel and dilation.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size.
        stride: Convolution stride.
        dilation: Atrous rate.
        groups: Convolution groups (``in_channels`` for depthwise).
        norm: Normalisation name or None.
        act: Activation name or None.
        bias: Conv bias; by default only when there is no norm.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        norm: str | None = "bn",
        act: str | None = "relu",
        bias: bool | None = None,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        reaching = stride == 1 and dilation * (kernel_size // 2) > 1  # taps beyond distance 1
        conv = (ReachConv2d if reaching else nn.Conv2d)(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=norm is None if bias is None else bias,
        )
        super().__init__(conv, make_norm(norm, out_channels), make_act(act))
        self.in_channels, self.out_channels = in_channels, out_channels


class SeparableConv(nn.Sequential):
    """Depthwise conv -> pointwise conv, each followed by norm and activation (Xception style).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Depthwise kernel size.
        stride: Depthwise stride.
        dilation: Depthwise atrous rate.
        norm: Normalisation name or None.
        act: Activation name or None.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        norm: str | None = "bn",
        act: str | None = "relu",
    ) -> None:
        super().__init__(
            ConvNormAct(
                in_channels, in_channels, kernel_size, stride, dilation, in_channels, norm, act
            ),
            ConvNormAct(in_channels, out_channels, 1, norm=norm, act=act),
        )
        self.in_channels, self.out_channels = in_channels, out_channels


def double_conv(
    in_channels: int, out_channels: int, norm: str | None = "bn", act: str | None = "relu"
) -> nn.Sequential:
    """Two 3x3 conv-norm-act layers, the U-Net level block."""
    return nn.Sequential(
        ConvNormAct(in_channels, out_channels, 3, norm=norm, act=act),
        ConvNormAct(out_channels, out_channels, 3, norm=norm, act=act),
    )


def resize_to(
    x: torch.Tensor, size: torch.Tensor | Sequence[int], mode: str = "bilinear"
) -> torch.Tensor:
    """Resizes ``x`` to a spatial size, or to the spatial size of a reference tensor.

    Args:
        x: Tensor ``(B, C, h, w)``.
        size: ``(H, W)`` or a tensor whose last two dimensions give it.
        mode: Interpolation mode.

    Returns:
        ``(B, C, H, W)``; ``x`` itself when the size already matches.
    """
    target = tuple(size.shape[-2:]) if isinstance(size, torch.Tensor) else tuple(size)
    tracing = torch.jit.is_tracing() or torch.compiler.is_exporting()
    if not tracing and tuple(x.shape[-2:]) == target:
        return x  # exporters would freeze this shortcut; when tracing, always interpolate
    align = False if mode in ("bilinear", "bicubic") else None
    out_size = size.shape[-2:] if isinstance(size, torch.Tensor) else target  # traceable
    return F.interpolate(x, size=out_size, mode=mode, align_corners=align)


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convs, unit norms, zero biases (the He et al. initialisation)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def centre_tap_init_(module: nn.Module) -> int:
    """Zeroes the off-centre taps of every wide-reaching convolution in ``module``, in place.

    Wide-reaching: a tap lies more than one pixel from the centre (``dilation * (k // 2) > 1``:
    every dilated ``3 x 3`` and FCN's ``7 x 7`` fc6; plain ``3 x 3`` convs are left alone). Such
    a convolution then starts as the ``1 x 1`` convolution of its centre tap. Trained on crops
    whose feature map is smaller than its reach (an ASPP branch at rate 12 on the ``8 x 8`` map
    of a 128-pixel crop at stride 16; fc6 on the ``2 x 2`` map of a 64-pixel crop at stride 32),
    the far taps only ever read zero padding: they get no gradient and keep their initial
    values, and on a whole image, where they read real features, random initial values add an
    input that no layer was trained on (the BatchNorm after an atrous depthwise conv then sees
    up to ~10^5 times its running variance). Zero, they stay zero: the layer computes on a whole
    image what it computed on the crops. Where the crops are large enough the taps train as
    usual.

    Args:
        module: Any module; its convolutions with a tap beyond distance 1 change.

    Returns:
        How many convolutions were changed.
    """
    changed = 0
    convs = (m for m in module.modules() if isinstance(m, nn.Conv2d))
    for m in convs:
        if max(d * (k // 2) for d, k in zip(m.dilation, m.kernel_size, strict=True)) > 1:
            kh, kw = m.kernel_size
            with torch.no_grad():
                centre = m.weight[:, :, kh // 2, kw // 2].clone()
                m.weight.zero_()
                m.weight[:, :, kh // 2, kw // 2] = centre
            changed += 1
    return changed


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weights that make a ConvTranspose2d (groups=channels or diagonal) bilinear up-sampling."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt = 1 - (og - center).abs() / factor
    kernel = filt[:, None] * filt[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = kernel
    return weight
