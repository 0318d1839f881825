"""seglab's models against segmentation_models_pytorch at matched parameter counts.

For each architecture both libraries have, the same encoder (random weights in both) and a
seglab decoder width searched so the parameter counts match. One training step is forward,
cross-entropy, backward and an AdamW step. The two models, and their encoders alone (forward
and backward of the features), are timed alternately; the encoder split says how much of a
time ratio is the encoder and how much the rest (decoder, loss, optimiser), measured in the
same run rather than explained in words.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import statistics
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.timing import (
    ce_loss,
    logits_of,
    n_params,
    profiled_peak,
    ratio_stats,
    tensor_bytes,
    time_alternating,
    train_flops,
)

ARCHS = ("U-Net", "U-Net++", "DeepLab v3", "DeepLab v3+", "PSPNet")


@functools.cache
def default_widths(name: str, encoder: str) -> tuple[int, ...]:
    """The decoder widths by smp's rule that seglab's ``name`` takes by default on ``encoder``
    (with or without the skip-less full-resolution levels, whichever the default builds)."""
    from seglab.models import create_model
    from seglab.models.encoders import create_encoder
    from seglab.models.unet import timm_decoder_channels

    with torch.device("meta"):
        enc = create_encoder(encoder, 3)
        options = [{}]
        if "full_resolution" in inspect.signature(timm_decoder_channels).parameters:
            options.insert(0, {"full_resolution": True})
        for kw in options:
            widths = tuple(timm_decoder_channels(enc, **kw))
            try:
                create_model(name, 2, encoder, decoder_channels=list(widths))
            except ValueError:
                continue
            return widths
    raise ValueError(f"No smp-rule decoder widths build seglab's {name} on {encoder}.")


def seglab_kwargs(arch: str, encoder: str, width: int) -> tuple[str, dict[str, Any]]:
    """seglab's model name and options for ``arch`` at decoder width ``width``, configured
    like smp's default (output stride, rates, no auxiliary head)."""
    if arch in ("U-Net", "U-Net++"):
        name = "unet" if arch == "U-Net" else "unetplusplus"
        default = default_widths(name, encoder)
        return name, {"decoder_channels": [max(1, round(c * width / default[-1])) for c in default]}
    if arch == "DeepLab v3":
        return "deeplabv3", {"output_stride": 8, "multi_grid": None, "channels": width}
    if arch == "DeepLab v3+":
        return "deeplabv3plus", {"output_stride": 16, "aspp_rates": (12, 24, 36), "channels": width}
    if arch == "PSPNet":
        return "pspnet", {"output_stride": 32, "aux_head": False, "channels": width}
    raise KeyError(arch)


def seglab_model(arch: str, encoder: str, width: int, classes: int) -> nn.Module:
    """The seglab model of ``arch`` at decoder width ``width``."""
    from seglab.models import create_model

    name, kwargs = seglab_kwargs(arch, encoder, width)
    return create_model(name, classes, encoder, **kwargs)


SMP_KWARGS: dict[str, tuple[str, dict[str, Any]]] = {
    "U-Net": ("Unet", {}),
    "U-Net++": ("UnetPlusPlus", {}),
    "DeepLab v3": ("DeepLabV3", {}),
    "DeepLab v3+": ("DeepLabV3Plus", {}),
    "PSPNet": ("PSPNet", {"encoder_depth": 5, "upsampling": 32}),
}


def smp_model(arch: str, encoder: str, classes: int) -> nn.Module:
    """smp's model of ``arch`` (its defaults, PSPNet on the full encoder)."""
    import segmentation_models_pytorch as smp

    cls, kwargs = SMP_KWARGS[arch]
    return getattr(smp, cls)(encoder, encoder_weights=None, classes=classes, **kwargs)


WIDTHS = {
    "U-Net": range(4, 65),
    "U-Net++": range(4, 65),
    "DeepLab v3": range(64, 1025, 8),
    "DeepLab v3+": range(64, 1025, 8),
    "PSPNet": range(16, 2049, 8),
}


def matched_width(arch: str, encoder: str, target: int, classes: int) -> tuple[int, int]:
    """The seglab decoder width whose parameter count is closest to ``target``."""
    best: tuple[int, int] | None = None
    for w in WIDTHS[arch]:
        with torch.device("meta"):
            n = n_params(seglab_model(arch, encoder, w, classes))
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (w, n)
    assert best is not None
    return best


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """One training step: forward, cross-entropy, backward, AdamW."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(logits_of(model(x)), y).backward()
        opt.step()

    step.optimizer = opt  # type: ignore[attr-defined]
    return step


def encoder_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """Forward and backward of the encoder alone (loss: the sum of its features' means)."""

    def step() -> None:
        model.zero_grad(set_to_none=True)
        sum(f.float().mean() for f in model.encoder(x)).backward()

    return step


def encoder_stride(model: nn.Module, x: torch.Tensor) -> int:
    """The deepest encoder feature's stride, read from a real forward pass."""
    with torch.no_grad():
        feats = model.encoder(x)
    return x.shape[-1] // feats[-1].shape[-1]


def peak_step_memory(model: nn.Module, step: Callable[[], None]) -> int:
    """Live tensor bytes of one step after warm-up: parameters, buffers and AdamW state, plus
    the peak of what the step allocates (gradients, activations, temporaries)."""
    opt = step.optimizer  # type: ignore[attr-defined]
    opt.zero_grad(set_to_none=True)  # the profiler cannot see frees of earlier blocks
    resident = tensor_bytes(model.parameters()) + tensor_bytes(model.buffers())
    resident += tensor_bytes(v for s in opt.state.values() for v in s.values())
    return resident + profiled_peak(step)


def activation_memory(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Peak bytes of a training-mode forward pass and loss (what autograd keeps)."""
    model.train()
    kept: list[torch.Tensor] = []
    peak = profiled_peak(lambda: kept.append(F.cross_entropy(logits_of(model(x)), y)))
    kept.clear()
    return peak


def bench_models(args: argparse.Namespace, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Measures every architecture of ``args.archs``; one row per architecture."""
    rows = []
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, args.classes, (args.batch, args.size, args.size))
    for arch in args.archs:
        ref = smp_model(arch, args.encoder, args.classes)
        width, seg_params = matched_width(arch, args.encoder, n_params(ref), args.classes)
        ours = seglab_model(arch, args.encoder, width, args.classes)
        steps = {
            "seglab": make_step(ours, x, y),
            "smp": make_step(ref, x, y),
            "seglab_enc": encoder_step(ours, x),
            "smp_enc": encoder_step(ref, x),
        }
        t = time_alternating(steps, args.iters, args.warmup)
        med = {k: statistics.median(v) for k, v in t.items()}
        rest = [a - b for a, b in zip(t["seglab"], t["seglab_enc"], strict=True)]
        rest_ref = [a - b for a, b in zip(t["smp"], t["smp_enc"], strict=True)]
        mem = (peak_step_memory(ours, steps["seglab"]), peak_step_memory(ref, steps["smp"]))
        flops = (train_flops(ours, ce_loss(x, y)), train_flops(ref, ce_loss(x, y)))
        acts = (activation_memory(ours, x, y), activation_memory(ref, x, y))
        row = {
            "arch": arch,
            "width": width,
            "seglab_call": seglab_kwargs(arch, args.encoder, width),
            "smp_call": SMP_KWARGS[arch],
            "stride": (encoder_stride(ours, x), encoder_stride(ref, x)),
            "params": (seg_params, n_params(ref)),
            "step_s": (med["seglab"], med["smp"]),
            "time_ratio": ratio_stats(t["seglab"], t["smp"]),
            "enc_ratio": ratio_stats(t["seglab_enc"], t["smp_enc"]),
            "rest_ratio": statistics.median(rest) / statistics.median(rest_ref),
            "enc_share": (med["seglab_enc"] / med["seglab"], med["smp_enc"] / med["smp"]),
            "mem_mb": (mem[0] / 2**20, mem[1] / 2**20),
            "act_mb": (acts[0] / 2**20, acts[1] / 2**20),
            "gflops": (flops[0] / 1e9, flops[1] / 1e9),
        }
        log(
            f"{arch:12s} params {seg_params / 1e6:.2f}M / {n_params(ref) / 1e6:.2f}M  "
            f"step {med['seglab']:.3f}s / {med['smp']:.3f}s  ratio {row['time_ratio'][0]:.2f} "
            f"(encoder {row['enc_ratio'][0]:.2f}, rest {row['rest_ratio']:.2f})  "
            f"GFLOPs {flops[0] / 1e9:.1f} / {flops[1] / 1e9:.1f}"
        )
        rows.append(row)
        del ours, ref, steps
    return rows


def pair(a: float, b: float, fmt: str) -> str:
    """``a / b`` with one format."""
    return f"{a:{fmt}} / {b:{fmt}}"


def call_text(name: str, kwargs: dict[str, Any]) -> str:
    """``name(k=v, ...)`` of the options a model was built with."""
    return f"`{name}(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")`"


def render_models(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """The report section of ``bench_models``' rows."""
    L = ["## seglab against segmentation_models_pytorch\n"]
    L.append(
        f"Training step (forward, cross-entropy, backward, AdamW) on a "
        f"{args.batch}x3x{args.size}x{args.size} input, encoder `{args.encoder}` (random "
        f"weights) in both, {args.classes} classes, float32, CPU, {args.threads} thread(s); "
        f"{args.warmup} warm-up steps then {args.iters} timed steps per model, the models and "
        "their encoders alone interleaved. Ratio = seglab / smp (median of per-pair ratios, "
        "interquartile range in brackets); below one seglab is faster or smaller. Encoder = "
        "forward and backward of the encoder's features alone; rest = the step minus that "
        "(decoder, loss, optimiser), ratio of the medians. Peak MB = live tensor memory of one "
        "step (parameters, gradients, AdamW state, activations) from torch.profiler's "
        "allocator events; activation MB = a training-mode forward pass and loss alone.\n"
    )
    L.append(
        "| Architecture | Params (M) seglab / smp | Step s seglab / smp | Time ratio | "
        "Encoder time ratio | Rest time ratio | Encoder share of the step seglab / smp | "
        "Train GFLOPs seglab / smp | FLOP ratio | Peak MB seglab / smp | "
        "Activation MB seglab / smp | Activation ratio |"
    )
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        med, lo, hi = r["time_ratio"]
        emed, elo, ehi = r["enc_ratio"]
        L.append(
            f"| {r['arch']} | {pair(r['params'][0] / 1e6, r['params'][1] / 1e6, '.2f')} | "
            f"{pair(*r['step_s'], '.3f')} | **{med:.2f}** [{lo:.2f}, {hi:.2f}] | "
            f"{emed:.2f} [{elo:.2f}, {ehi:.2f}] | {r['rest_ratio']:.2f} | "
            f"{pair(100 * r['enc_share'][0], 100 * r['enc_share'][1], '.0f')} % | "
            f"{pair(*r['gflops'], '.1f')} | {r['gflops'][0] / r['gflops'][1]:.2f} | "
            f"{pair(*r['mem_mb'], '.0f')} | {pair(*r['act_mb'], '.1f')} | "
            f"**{r['act_mb'][0] / r['act_mb'][1]:.2f}** |"
        )
    L.append(
        "\nTrain GFLOPs: forward, loss and backward counted by `torch.utils.flop_counter` "
        "(a multiply-add counts two). Configurations (seglab's width searched to match smp's "
        "parameter count; encoder stride read from a forward pass):\n"
    )
    for r in rows:
        name, kw = r["seglab_call"]
        cls, skw = r["smp_call"]
        L.append(
            f"- {r['arch']}: seglab {call_text(name, kw)}, stride {r['stride'][0]}; "
            f"smp {call_text(cls, skw)}, stride {r['stride'][1]}."
        )
    return L + [""]
