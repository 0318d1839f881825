"""Models made traceable for export: eval mode, a pruning level, ONNX-friendly pooling.

ONNX has no adaptive pooling to a grid other than 1x1, so for ONNX PSPNet's pyramid bins become
averaging matrices computed from the input size (:class:`AdaptiveAvgPool2dExport`, equal to
PyTorch's pooling).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from seglab.models.blocks import averaging_matrix


def script_model(model: nn.Module, path: str | Path) -> torch.jit.ScriptModule:
    """``torch.jit.script(model)``, or a ValueError naming the reason and the traced default."""
    try:
        return torch.jit.script(model)
    except Exception as err:  # TorchScript's compiler raises many types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0].removesuffix(" at")
        raise ValueError(
            f"TorchScript could not script {type(model).__name__} ({first}); nothing was "
            f"written to {path}. Use --torchscript-method trace (the default), which exports "
            "and checks every seglab model at any input size."
        ) from err


def export_ready(model: nn.Module, prune_level: int | None = None) -> nn.Module:
    """The network in eval mode and float32, at ``prune_level`` if given (U-Net++)."""
    if prune_level is not None:
        if not hasattr(model, "prune_level"):
            raise ValueError(
                f"--prune-level needs a prunable model (unetplusplus), not {type(model).__name__}."
            )
        model.prune_level = prune_level
    return model.float().eval()


class AdaptiveAvgPool2dExport(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two averaging matrices built from the input size.

    ONNX has no adaptive pooling to a grid other than 1x1, and both exporters fix the pooling
    windows at the tracing size. Bin ``i`` of ``n`` over a side of ``L`` averages
    ``[floor(i L / n), ceil((i + 1) L / n))``, PyTorch's rule, so the result equals
    ``adaptive_avg_pool2d`` up to float rounding at every size.
    """

    def __init__(self, output_size: int | Sequence[int | None]) -> None:
        super().__init__()
        size = (output_size, output_size) if isinstance(output_size, int) else output_size
        self.output_size = tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The TorchScript tracer needs the sizes as tensors; torch.export keeps them symbolic.
        shape = torch._shape_as_tensor(x) if torch.jit.is_tracing() else x.shape
        bh, bw = (s if s is not None else x.shape[-2 + k] for k, s in enumerate(self.output_size))
        rows = averaging_matrix(bh, shape[-2], x.transpose(-1, -2))  # (bh, H)
        cols = averaging_matrix(bw, shape[-1], x)  # (bw, W)
        return rows @ x @ cols.transpose(0, 1)


def onnx_ready(model: nn.Module, dynamo: bool = False) -> nn.Module:
    """A copy of ``model`` whose grid adaptive poolings (PSPNet's bins) export dynamically.

    Raises:
        ValueError: ``dynamo`` with a PSPNet whose cells have a fixed size (``pool_window``,
            or the training size it recorded): onnxruntime rejects the dynamic resize of its
            cell grid; the TorchScript-based exporter handles it.
    """
    from seglab.models.pspnet import PyramidPooling

    if dynamo and any(isinstance(m, PyramidPooling) and m.window for m in model.modules()):
        raise ValueError(
            "PSPNet with pooling cells of a fixed size (pool_window, or the training size its "
            "default 'train' recorded) exports with the TorchScript-based ONNX exporter (the "
            "default) or as TorchScript, not with --dynamo: onnxruntime rejects the dynamic "
            "resize of its cell grid. Leave out --dynamo."
        )
    pools = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size not in (1, (1, 1))
    ]
    if not pools:
        return model
    import copy

    model = copy.deepcopy(model)
    for name, pool in pools:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, AdaptiveAvgPool2dExport(pool.output_size))
    return model


def example_input(model: nn.Module, height: int, width: int, batch: int = 1) -> torch.Tensor:
    """A random input with the encoder's channel count."""
    in_channels = getattr(getattr(model, "encoder", None), "in_channels", 3)
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, in_channels, height, width, generator=gen)
