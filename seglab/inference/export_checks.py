"""What an export is checked on, and what a deployer needs to know about it.

An exported network is compared with PyTorch on real images where there are any (``--images
DIR``, else the validation images the checkpoint's data settings describe) plus a random batch
at an odd size (the dynamic axes). Two numbers are reported per format:

- ``max_rel_diff``: the largest ``|export - pytorch|`` over all logits divided by the largest
  ``|pytorch logit|`` (float32 rounding of a deep network is relative to the logits' scale, so
  an absolute tolerance fails big-logit models that agree to six digits);
- ``argmax_agreement``: the share of pixels whose decision (argmax, or logit > 0 for binary /
  multilabel) is the same, on the real images (on the random inputs when there are none).

:func:`input_spec` writes the input contract into ``export.json``: dynamic batch, height and
width, the minimum size, the normalisation (``(pixel / 255 - mean) / std``) and channel count.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

RTOL = 1e-4
MIN_AGREEMENT = 0.999
Run = Callable[[torch.Tensor], np.ndarray]


def decisions(logits: np.ndarray, task: str) -> np.ndarray:
    """The per-pixel decision of a task (argmax for multiclass, logit > 0 otherwise)."""
    return logits.argmax(1) if task == "multiclass" else logits > 0


def compare(
    run: Run,
    model: nn.Module,
    inputs: Sequence[torch.Tensor],
    real: Sequence[torch.Tensor] = (),
    task: str = "multiclass",
) -> dict[str, Any]:
    """``max_abs_diff``, ``max_rel_diff`` and ``argmax_agreement`` of ``run`` against ``model``.

    Args:
        run: The exported model as a function of an input batch (returns numpy logits).
        model: The PyTorch network in eval mode.
        inputs: Random inputs (shapes: the export size and an odd size).
        real: Real images ``(1, C, H, W)`` each; the agreement is measured on them if given.
        task: ``multiclass``, ``binary`` or ``multilabel`` (the decision rule).
    """
    worst_abs, scale, same, total = 0.0, 0.0, 0, 0
    for i, x in enumerate([*real, *inputs]):
        with torch.no_grad():
            ref = model(x).numpy()
        out = run(x)
        if out.shape != ref.shape:
            raise AssertionError(f"Export output {out.shape} != PyTorch {ref.shape} for {x.shape}.")
        worst_abs = max(worst_abs, float(np.abs(out - ref).max()))
        scale = max(scale, float(np.abs(ref).max()))
        if i < len(real) or not real:
            agree = decisions(out, task) == decisions(ref, task)
            same, total = same + int(agree.sum()), total + agree.size
    return {
        "max_abs_diff": worst_abs,
        "max_rel_diff": worst_abs / max(scale, 1e-12),
        "argmax_agreement": same / max(total, 1),
        "checked_on": f"{len(real)} real image(s)" if real else "random inputs only",
    }


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


def onnx_runner(path: str | Path) -> Run:
    session = onnx_session(path)
    return lambda x: session.run(["logits"], {"image": x.numpy()})[0]


def torchscript_runner(path: str | Path) -> Run:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(x).numpy()

    return run


def name_output_axes(path: str | Path, num_classes: int) -> None:
    """Names the ONNX output axes ``batch, <num_classes>, height, width`` (the class axis is
    fixed; the TorchScript exporter called it after an internal node, ``Resizelogits_dim_1``)."""
    import onnx

    model = onnx.load(str(path))
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) != 4:
            continue
        for k, name in ((0, "batch"), (2, "height"), (3, "width")):
            if not dims[k].HasField("dim_value"):
                dims[k].dim_param = name
        if value.name == "logits":
            dims[1].dim_value = int(num_classes)
    onnx.save(model, str(path))


def real_images(
    ckpt: dict[str, Any], images: str | Path | None, limit: int = 4
) -> tuple[list[torch.Tensor], str]:
    """Up to ``limit`` images prepared as the checkpoint's data settings say, and where from.

    ``images`` (a folder, flat or with ``images/``) first; else the validation split of the
    checkpoint's data module (readers that need no download; not the CT phantom).
    """
    from seglab.data.datamodule import SegDataModule

    data = dict(ckpt.get("datamodule_hyper_parameters") or {})
    data.pop("_instantiator", None)
    channels = int((ckpt.get("hyper_parameters") or {}).get("in_channels", 3))
    if images is not None:
        dm = SegDataModule(
            dataset="folder",
            dataset_kwargs={"channels": channels},
            mean=data.get("mean"),
            std=data.get("std"),
            num_workers=0,
        )
        ds, source = dm.make_dataset("predict", root=str(images)), str(images)
    elif data and not (data.get("dataset") == "ct_slices" and not data.get("root")):
        try:
            dm = SegDataModule(**(data | {"num_workers": 0}))
            ds = dm.make_dataset(data.get("val_split") or "val")
        except (OSError, ValueError) as err:
            return [], f"none (validation data not readable: {err})"
        source = f"validation split of {data.get('dataset')} ({data.get('root') or 'built in'})"
    else:
        return [], "none (no data settings in the checkpoint)"
    return [ds[i]["image"][None] for i in range(min(limit, len(ds)))], source


def _normalisation(data: dict[str, Any]) -> str:
    scaled = "pixel / 255 (16-bit images: pixel / 65535)"
    if data.get("dataset") == "ct_slices":
        lo, hi = (data.get("dataset_kwargs") or {}).get("window", (-200, 250))
        scaled = f"clip(HU, {lo}, {hi}) scaled to [0, 1]"
    if data.get("mean") is None:
        return f"x = {scaled} (no mean/std in the checkpoint)"
    return f"x = ({scaled} - mean) / std per channel"


def input_spec(model: nn.Module, ckpt: dict[str, Any]) -> dict[str, Any]:
    """The input contract of an exported model for ``export.json``."""
    data = ckpt.get("datamodule_hyper_parameters") or {}
    hp = ckpt.get("hyper_parameters") or {}
    reductions = getattr(getattr(model, "encoder", None), "reductions", None) or [32]
    stride = int(max(reductions))
    mean, std = data.get("mean"), data.get("std")
    return {
        "name": "image",
        "shape": ["batch", int(hp.get("in_channels", 3)), "height", "width"],
        "dtype": "float32",
        "size": f"any height and width >= {stride} (dynamic axes); logits come back at the "
        f"input size; multiples of {stride} avoid internal resizing",
        "min_size": stride,
        "multiple_of": stride,
        "mean": mean,
        "std": std,
        "normalisation": _normalisation(data),
        "channel_order": "RGB" if int(hp.get("in_channels", 3)) == 3 else "as trained",
    }
