"""What every benchmark shares: alternating timing, ratio statistics, memory and FLOP counts,
the machine's description and the report file, whose sections each benchmark rewrites alone.

Timings are only ever compared as ratios of runs interleaved in one process (``a, b, b, a``),
so a shared, loaded machine slows both sides alike.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import re
import shlex
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"


# ------------------------------------------------------------------------------ machine
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> tuple[float, ...] | None:
    """The 1/5/15-minute load average, or None where the OS has none."""
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def code_version() -> str:
    """The commit measured, and whether ``seglab/`` had uncommitted changes."""
    import subprocess

    def git(*cmd: str) -> str:
        out = subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "seglab")
    return f"{commit}, with uncommitted changes in seglab/" if dirty else commit


def machine() -> dict[str, Any]:
    """CPU, cores, load, GPU and library versions of this process."""
    import lightning
    import segmentation_models_pytorch as smp
    import timm

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load": load_average(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "smp": smp.__version__,
        "timm": timm.__version__,
        "cuda": torch.cuda.is_available(),
        "gpu": gpu,
        "code": code_version(),
    }


def machine_lines(info: dict[str, Any], threads: int, load_end: Any) -> list[str]:
    """The report's machine paragraph, from ``machine()`` and the load at the end."""

    def loads(v: Any) -> str:
        return ", ".join(f"{x:.2f}" for x in v or []) or "n/a"

    gpu = f"; GPU: {info['gpu']}" if info.get("gpu") else ""
    peak = max([*(info["load"] or []), *(load_end or [])], default=0.0)
    cores = info["cores"] or 1
    shared = (
        f"The load reached {peak:.2f} on {cores} cores: other jobs shared the CPU, so absolute "
        "times are contended; ratios come from runs interleaved in one process."
        if peak > cores
        else f"The load stayed at or below the {cores} cores."
    )
    return [
        f"- CPU: {info['cpu']}, {cores} cores visible; torch threads: {threads}{gpu}",
        f"- seglab at commit {info.get('code', 'unknown')}; torch {info['torch']}, Lightning "
        f"{info['lightning']}, smp {info['smp']}, "
        f"timm {info['timm']}, Python {info['python']}; CUDA: {info['cuda']}",
        f"- Load average (one, five and fifteen minutes) at start: {loads(info['load'])}; at end: "
        f"{loads(load_end)}. {shared}",
    ]


# ------------------------------------------------------------------------------- timing
def time_alternating(
    steps: dict[str, Callable[[], Any]], iters: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds per call of each function, called in turn (order reversed every round)."""
    names = list(steps)
    for _ in range(warmup):
        for n in names:
            steps[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(iters):
        for n in names if i % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            steps[n]()
            times[n].append(time.perf_counter() - start)
    return times


def ratio_stats(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Median, lower and upper quartile of the per-pair ratios ``a / b``."""
    ratios = sorted(x / y for x, y in zip(a, b, strict=True))
    if len(ratios) < 4:
        return statistics.median(ratios), ratios[0], ratios[-1]
    q = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), q[0], q[-1]


def mean_spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), sd


# --------------------------------------------------------------------- memory and FLOPs
def logits_of(out: Any) -> torch.Tensor:
    """The main logits of a model output (a tensor or a ``ModelOutput``)."""
    return out.logits if hasattr(out, "logits") else out


def n_params(model: nn.Module) -> int:
    """Parameters of a model."""
    return sum(p.numel() for p in model.parameters())


def tensor_bytes(tensors: Iterable[Any]) -> int:
    """Bytes held by the tensors among ``tensors``."""
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def profiled_peak(fn: Callable[[], Any]) -> int:
    """Peak of the bytes ``fn`` allocates on the CPU (allocations minus frees, in time order)."""
    from torch.profiler import ProfilerActivity, profile

    with (
        contextlib.redirect_stderr(io.StringIO()),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof,
    ):
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak


def train_flops(model: nn.Module, loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> int:
    """FLOPs of forward, loss and backward (``FlopCounterMode``; a multiply-add counts two).

    Args:
        model: The model, put in train mode.
        loss_fn: Maps the model's output to a scalar loss (the input is bound inside).
    """
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        loss_fn(model).backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def ce_loss(x: torch.Tensor, y: torch.Tensor) -> Callable[[nn.Module], torch.Tensor]:
    """``model -> cross-entropy of model(x) against y`` (for ``train_flops``)."""
    return lambda model: F.cross_entropy(logits_of(model(x)), y)


def quiet_lightning() -> None:
    """Lightning sets its loggers to INFO on import: back to warnings, and no warnings shown."""
    import logging
    import warnings

    import lightning  # noqa: F401

    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


def bench_trainer(root: Path, callbacks: list, accelerator: str, logging: bool, **kwargs: Any):
    """A ``Trainer`` for timing: one device, no validation, checkpointing or model summary;
    the CSV logger (every step) and the progress bar only with ``logging``."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    return L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=CSVLogger(str(root), name="bench") if logging else False,
        log_every_n_steps=1,
        enable_progress_bar=logging,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        default_root_dir=str(root),
        **kwargs,
    )


# ------------------------------------------------------------------------------- report
def update_section(path: Path, name: str, body: str) -> None:
    """Writes ``body`` between the ``<!-- bench:name -->`` markers of ``path``, keeping the
    sections other benchmarks wrote; a missing section is appended."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# seglab benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def command_line(script: str, argv: list[str], target: str | None = None) -> str:
    """The command that produced a report, in backticks (``make <target>`` when no args)."""
    cmd = "`" + " ".join([f".venv/bin/python benchmarks/{script}", shlex.join(argv)]).strip() + "`"
    return f"`make {target}` ({cmd})" if target and not argv else cmd
