"""``seglab export``: a checkpoint to ONNX and TorchScript, each checked against PyTorch.

::

    seglab export --ckpt runs/default/<time>/checkpoints/best-epoch=011.ckpt --out exported/ \\
        [--format onnx torchscript] [--prune-level L] [--opset 17] [--height 256 --width 256]

The model is exported in eval mode, where every seglab model returns one logits tensor
``(B, C, H, W)`` at the input size: deep-supervision heads and auxiliary heads are not run, and
U-Net 3+'s classification-guided module is exported as its eval-time gate. ``--prune-level``
exports U-Net++ at a pruning level (the checkpoint's own ``prune_level`` otherwise). ONNX has a
dynamic batch, height and width; TorchScript is traced (``--torchscript-method script`` to
script). Every file is run again (onnxruntime, ``torch.jit.load``) at the export size and at a
second, odd size, and the largest absolute difference from the PyTorch logits is printed; above
``--tolerance`` (1e-4) the export fails.

Why the export needs care: ``seglab.models.blocks.resize_to`` skips the interpolation when the
sizes already match, a decision a traced graph would freeze; it therefore always interpolates
while tracing or exporting (a same-size bilinear resize is the identity). ONNX has no adaptive
pooling to a grid other than 1x1, so for ONNX PSPNet's pyramid bins become averaging matrices
computed from the input size (:class:`AdaptiveAvgPool2dExport`, equal to PyTorch's pooling).

ONNX is written by the TorchScript-based exporter at opset 17 by default (about a second per
model); ``--dynamo`` uses the ``torch.export``-based one (opset 18 or newer, ten times slower
to export, the same results).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seglab.inference.traceable import (  # noqa: F401  (re-exported)
    AdaptiveAvgPool2dExport,
    example_input,
    export_ready,
    onnx_ready,
)
from seglab.runs.checkpoint import load_task, task_class  # noqa: F401  (task_class re-exported)

FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4


def export_onnx(
    model: nn.Module,
    path: str | Path,
    example: torch.Tensor,
    opset: int = 17,
    dynamo: bool = False,
) -> Path:
    """Writes ``model`` as ONNX with dynamic batch, height and width (input ``image``, output
    ``logits``).

    Args:
        model: An eval-mode network returning one tensor.
        path: Output ``.onnx`` file.
        example: Input used for tracing.
        opset: ONNX opset (17 by default; the dynamo exporter needs 18 or newer and is moved
            up to 18).
        dynamo: Use the ``torch.export`` based exporter instead of the TorchScript one (slower
            to export; the default since torch 2.9).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = onnx_ready(model)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            dim = torch.export.Dim.DYNAMIC
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                input_names=["image"],
                output_names=["logits"],
                opset_version=max(opset, 18),
                dynamic_shapes=({0: dim, 2: dim, 3: dim},),
                verbose=False,
            )
            program.save(str(path), external_data=False)
        else:
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                input_names=["image"],
                output_names=["logits"],
                opset_version=opset,
                dynamic_axes={
                    "image": {0: "batch", 2: "height", 3: "width"},
                    "logits": {0: "batch", 2: "height", 3: "width"},
                },
            )
    return path


def export_torchscript(
    model: nn.Module, path: str | Path, example: torch.Tensor, method: str = "trace"
) -> Path:
    """Writes ``model`` as TorchScript, traced (default) or scripted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "trace":
            scripted = torch.jit.trace(model, example, check_trace=False)
        elif method == "script":
            scripted = torch.jit.script(model)
        else:
            raise ValueError(f"method must be 'trace' or 'script', got {method!r}.")
        torch.jit.save(scripted, str(path))  # deprecated in favour of torch.export; still works
    return path


def onnx_session(path: str | Path) -> Any:
    """An onnxruntime CPU session on one thread (deterministic, no oversubscription)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_onnx(path: str | Path, model: nn.Module, inputs: Sequence[torch.Tensor]) -> float:
    """Largest absolute difference between onnxruntime and PyTorch over ``inputs``."""
    session = onnx_session(path)
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            ref = model(x).numpy()
        (out,) = session.run(["logits"], {"image": x.numpy()})
        if out.shape != ref.shape:
            raise AssertionError(f"ONNX output {out.shape} != PyTorch {ref.shape} for {x.shape}.")
        worst = max(worst, float(np.abs(out - ref).max()))
    return worst


def check_torchscript(path: str | Path, model: nn.Module, inputs: Sequence[torch.Tensor]) -> float:
    """Largest absolute difference between the loaded TorchScript module and PyTorch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(path), map_location="cpu").eval()
    worst = 0.0
    for x in inputs:
        with torch.no_grad():
            ref, out = model(x), loaded(x)
        if out.shape != ref.shape:
            raise AssertionError(f"TorchScript output {out.shape} != PyTorch {ref.shape}.")
        worst = max(worst, float((out - ref).abs().max()))
    return worst


def check_inputs(example: torch.Tensor) -> list[torch.Tensor]:
    """The export-size input, and a batch of two at a different, odd size."""
    _, c, h, w = example.shape
    gen = torch.Generator().manual_seed(1)
    other = torch.randn(2, c, h + 2 * (h // 8) + 3, w - 2 * (w // 8) + 1, generator=gen)
    return [example, other]


def export_model(
    model: nn.Module,
    out_dir: str | Path,
    formats: Sequence[str] = FORMATS,
    height: int = 256,
    width: int = 256,
    opset: int = 17,
    dynamo: bool = False,
    torchscript_method: str = "trace",
    tolerance: float = TOLERANCE,
    name: str = "model",
    log: Any = print,
) -> dict[str, Any]:
    """Exports an eval-mode network to every format, checks each, returns a report.

    Raises:
        AssertionError: When an export differs from PyTorch by more than ``tolerance``.
    """
    out_dir = Path(out_dir)
    model = export_ready(model)
    example = example_input(model, height, width)
    inputs = check_inputs(example)
    report: dict[str, Any] = {"input": list(example.shape), "files": {}}
    for fmt in formats:
        start = time.perf_counter()
        if fmt == "onnx":
            path = export_onnx(model, out_dir / f"{name}.onnx", example, opset, dynamo)
            diff = check_onnx(path, model, inputs)
        elif fmt == "torchscript":
            path = export_torchscript(model, out_dir / f"{name}.pt", example, torchscript_method)
            diff = check_torchscript(path, model, inputs)
        else:
            raise ValueError(f"Unknown format {fmt!r}; choose from {FORMATS}.")
        sizes = " and ".join("x".join(map(str, x.shape)) for x in inputs)
        log(
            f"{fmt}: {path} ({path.stat().st_size / 1e6:.1f} MB, "
            f"{time.perf_counter() - start:.1f} s); max |diff| vs PyTorch at {sizes}: {diff:.2e}"
        )
        report["files"][fmt] = {"path": str(path), "max_abs_diff": diff}
        if not diff <= tolerance:
            raise AssertionError(
                f"{fmt} export differs from PyTorch by {diff:.3e} > {tolerance:.0e} ({path})."
            )
    return report


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="seglab export",
        description="Export a seglab checkpoint to ONNX and TorchScript, checked against PyTorch.",
    )
    p.add_argument("--ckpt", required=True, help="Checkpoint written by seglab fit.")
    p.add_argument("--out", required=True, help="Output folder.")
    p.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS))
    p.add_argument("--prune-level", type=int, default=None, help="U-Net++ pruning level.")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17).")
    p.add_argument("--height", type=int, default=256, help="Tracing height (any works later).")
    p.add_argument("--width", type=int, default=256, help="Tracing width.")
    p.add_argument(
        "--dynamo",
        action="store_true",
        help="Use the torch.export-based ONNX exporter (opset >= 18) instead of TorchScript's.",
    )
    p.add_argument("--torchscript-method", choices=("trace", "script"), default="trace")
    p.add_argument("--tolerance", type=float, default=TOLERANCE, help="Largest |diff| allowed.")
    p.add_argument("--name", default=None, help="File stem (default: the architecture name).")
    return p.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``seglab export``; writes ``<out>/export.json`` with the report."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    task = load_task(args.ckpt)
    model = export_ready(task.model, args.prune_level)
    name = args.name or task.hparams.model
    print(
        f"seglab export: {task.hparams.model} ({type(task).__name__}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters, "
        f"prune_level={getattr(model, 'prune_level', None)}) from {args.ckpt}"
    )
    report = export_model(
        model,
        args.out,
        args.format,
        args.height,
        args.width,
        args.opset,
        args.dynamo,
        args.torchscript_method,
        args.tolerance,
        name,
    )
    h = task.hparams
    report |= {
        "checkpoint": str(args.ckpt),
        "model": h.model,
        "num_classes": h.num_classes,
        "task": h.task,
        "in_channels": h.in_channels,
        "prune_level": getattr(model, "prune_level", None),
        "class_names": list(h.class_names) if h.class_names else None,
        "output": "logits (batch, num_classes, height, width); "
        + {"multiclass": "argmax over classes", "binary": "foreground where logit > 0"}.get(
            h.task, "label present where logit > 0"
        ),
    }
    out = Path(args.out) / "export.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"report: {out}")
    return report
