"""Training-step measurements for the GPU benchmark: one configuration (precision, memory format,
``torch.compile``) of one model, the device's measured matmul peak, peak memory.

Runs on any device; on the CPU (``--device cpu``) the same code runs at tiny sizes for its test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.timing import logits_of, profiled_peak

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Config:
    """One way of running a training step: ``precision`` (fp32 or bf16/fp16 autocast),
    ``channels_last`` and ``compile``; named like ``bf16+cl+compile``."""

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def parse(cls, name: str) -> Config:
        parts = name.split("+")
        if parts[0] not in DTYPES or not set(parts[1:]) <= {"cl", "compile"}:
            raise ValueError(
                f"Configuration {name!r}: expected <fp32|bf16|fp16>[+cl][+compile], "
                "e.g. bf16+cl+compile."
            )
        return cls(parts[0], "cl" in parts[1:], "compile" in parts[1:])

    @property
    def name(self) -> str:
        return "+".join([self.precision] + ["cl"] * self.channels_last + ["compile"] * self.compile)


def sync(device: torch.device | str) -> None:
    """Waits for queued GPU work (a no-op on the CPU), so that a timer reads finished work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def make_step(
    model: nn.Module,
    cfg: Config,
    x: torch.Tensor,
    y: torch.Tensor,
    backend: str = "inductor",
) -> Callable[[], None]:
    """One training step of ``model`` under ``cfg``: forward (autocast unless fp32), float32
    cross-entropy, backward (gradient scaling for fp16), AdamW."""
    device = x.device
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    run = torch.compile(model, backend=backend) if cfg.compile else model
    amp = cfg.precision != "fp32"
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=DTYPES[cfg.precision], enabled=amp):
            logits = logits_of(run(x))
        loss = F.cross_entropy(logits.float(), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def timed(step: Callable[[], None], device: torch.device) -> float:
    """Seconds of one call, the device's queue drained before and after."""
    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - start


def peak_memory(step: Callable[[], None], device: torch.device) -> int:
    """Peak bytes of one step: CUDA's ``max_memory_allocated`` (everything allocated, model
    and optimiser state included); on the CPU the profiler's peak of what the step allocates."""
    if device.type != "cuda":
        return profiled_peak(step)
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    sync(device)
    return torch.cuda.max_memory_allocated(device)


def matmul_peak(device: torch.device, precision: str, n: int, reps: int) -> float:
    """Measured FLOP/s of ``reps`` square ``n x n`` matmuls in ``precision`` (fp32 follows the
    process's TF32 setting, as the convolutions do)."""
    a = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    b = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    for _ in range(2):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)
