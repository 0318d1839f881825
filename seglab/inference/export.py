"""``seglab export``: a checkpoint to ONNX and TorchScript, each checked against PyTorch.

::

    seglab export --ckpt runs/default/<time>/checkpoints/best-epoch=011.ckpt --out exported/ \\
        [--format onnx torchscript] [--prune-level L] [--opset 17] [--height 256 --width 256]

The model is exported in eval mode, where every seglab model returns one logits tensor
``(B, C, H, W)`` at the input size: deep-supervision heads and auxiliary heads are not run, and
U-Net 3+'s classification-guided module is exported as its eval-time gate. ``--prune-level``
exports U-Net++ at a pruning level (the checkpoint's own ``prune_level`` otherwise). ONNX has a
dynamic batch, height and width; TorchScript is traced (``--torchscript-method script`` scripts
a module TorchScript can compile, and otherwise says why). Every file is run again
(onnxruntime, ``torch.jit.load``) at the export size and at a second, odd size, and the
largest absolute difference from the PyTorch logits is printed; above
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

import torch
from torch import nn

from seglab.data.io import load_checkpoint_file
from seglab.inference.export_checks import (  # noqa: F401  (check_* and onnx_session re-exported)
    MIN_AGREEMENT,
    RTOL,
    check_inputs,
    check_onnx,
    check_torchscript,
    compare,
    input_spec,
    name_output_axes,
    onnx_runner,
    onnx_session,
    real_images,
    torchscript_runner,
)
from seglab.inference.traceable import (  # noqa: F401  (re-exported)
    AdaptiveAvgPool2dExport,
    example_input,
    export_ready,
    onnx_ready,
    script_model,
)
from seglab.runs.checkpoint import load_task, task_class  # noqa: F401  (task_class re-exported)

FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4  # the absolute tolerance of the tests on random inputs


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
    model = onnx_ready(model, dynamo)
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
            scripted = script_model(model, path)
        else:
            raise ValueError(f"method must be 'trace' or 'script', got {method!r}.")
        torch.jit.save(scripted, str(path))  # deprecated in favour of torch.export; still works
    return path


class ExportCheckError(AssertionError):
    """An exported file disagrees with PyTorch beyond the tolerances (the files are kept)."""


def export_model(
    model: nn.Module,
    out_dir: str | Path,
    formats: Sequence[str] = FORMATS,
    height: int = 256,
    width: int = 256,
    opset: int = 17,
    dynamo: bool = False,
    torchscript_method: str = "trace",
    tolerance: float | None = None,
    name: str = "model",
    log: Any = print,
    rtol: float = RTOL,
    min_agreement: float = MIN_AGREEMENT,
    real: Sequence[torch.Tensor] = (),
    task: str = "multiclass",
) -> dict[str, Any]:
    """Exports an eval-mode network to every format, checks each, returns a report.

    Every file is written before any check is judged. A format passes when its largest
    relative logit difference is <= ``rtol`` and its argmax agreement >= ``min_agreement``
    (and, if given, its largest absolute difference <= ``tolerance``); ``report["passed"]``
    says whether all did, ``report["files"][fmt]`` holds each format's numbers.
    """
    out_dir = Path(out_dir)
    model = export_ready(model)
    example = example_input(model, height, width)
    inputs = check_inputs(example)
    report: dict[str, Any] = {"input": list(example.shape), "files": {}, "passed": True}
    for fmt in formats:
        start = time.perf_counter()
        if fmt == "onnx":
            path = export_onnx(model, out_dir / f"{name}.onnx", example, opset, dynamo)
            with torch.no_grad():
                name_output_axes(path, model(example).shape[1])
            run = onnx_runner(path)
        elif fmt == "torchscript":
            path = export_torchscript(model, out_dir / f"{name}.pt", example, torchscript_method)
            run = torchscript_runner(path)
        else:
            raise ValueError(f"Unknown format {fmt!r}; choose from {FORMATS}.")
        found = compare(run, model, inputs, real, task)
        ok = found["max_rel_diff"] <= rtol and found["argmax_agreement"] >= min_agreement
        ok = ok and (tolerance is None or found["max_abs_diff"] <= tolerance)
        sizes = " and ".join("x".join(map(str, x.shape)) for x in inputs)
        log(
            f"{fmt}: {path} ({path.stat().st_size / 1e6:.1f} MB, "
            f"{time.perf_counter() - start:.1f} s); vs PyTorch on {found['checked_on']} + "
            f"random {sizes}: max |diff| {found['max_abs_diff']:.2e}, relative "
            f"{found['max_rel_diff']:.2e} (<= {rtol:.0e}), argmax agreement "
            f"{100 * found['argmax_agreement']:.3f} % (>= {100 * min_agreement:g} %)"
            + ("" if ok else "  FAILED")
        )
        report["files"][fmt] = {"path": str(path), **found, "passed": ok}
        report["passed"] = report["passed"] and ok
    report["tolerances"] = {"rtol": rtol, "min_agreement": min_agreement, "atol": tolerance}
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
    p.add_argument(
        "--rtol", type=float, default=RTOL, help="Largest |diff| / max |logit| (default 1e-4)."
    )
    p.add_argument(
        "--min-agreement", type=float, default=MIN_AGREEMENT, help="Least argmax agreement."
    )
    p.add_argument("--tolerance", type=float, default=None, help="Largest |diff| (off).")
    p.add_argument("--images", default=None, help="Folder of real images to check on.")
    p.add_argument("--name", default=None, help="File stem (default: the architecture name).")
    return p.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``seglab export``: every file, then ``<out>/export.json`` with the report;
    a check beyond its tolerance raises :class:`ExportCheckError` after everything is written."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    ckpt = load_checkpoint_file(args.ckpt)
    task = load_task(args.ckpt)
    model = export_ready(task.model, args.prune_level)
    name = args.name or task.hparams.model
    print(
        f"seglab export: {task.hparams.model} ({type(task).__name__}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters, "
        f"prune_level={getattr(model, 'prune_level', None)}) from {args.ckpt}"
    )
    real, source = real_images(ckpt, args.images)
    print(f"checked on: {source}")
    h = task.hparams
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
        rtol=args.rtol,
        min_agreement=args.min_agreement,
        real=real,
        task=h.task,
    )
    import seglab

    report |= {
        "checkpoint": str(args.ckpt),
        "checked_on": source,
        "model": h.model,
        "num_classes": h.num_classes,
        "task": h.task,
        "in_channels": h.in_channels,
        "prune_level": getattr(model, "prune_level", None),
        "class_names": list(task.class_names),
        "input_spec": input_spec(model, ckpt),
        "output": "logits (batch, num_classes, height, width) at the input size; "
        + {"multiclass": "argmax over classes", "binary": "foreground where logit > 0"}.get(
            h.task, "label present where logit > 0"
        ),
        "opset": args.opset if not args.dynamo else max(args.opset, 18),
        "seglab_version": seglab.__version__,
        "torch_version": torch.__version__,
    }
    out = Path(args.out) / "export.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"report: {out}")
    if not report["passed"]:
        bad = [f for f, r in report["files"].items() if not r["passed"]]
        raise ExportCheckError(
            f"{', '.join(bad)} export differs from PyTorch beyond --rtol {args.rtol:g} / "
            f"--min-agreement {args.min_agreement:g} (see {out}); the files are written. "
            "Loosen the tolerances if the agreement is acceptable, or try another --opset."
        )
    return report
