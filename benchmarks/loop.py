"""seglab's Lightning loop against a plain PyTorch loop doing the same training step.

The default experiment's task (model, loss, optimiser and per-step schedule) on batches held in
memory, trained by ``Trainer.fit`` (logger, progress bar, checkpointing, validation and model
summary off; then CSV logging every step and the progress bar on) and by a hand-written loop;
runs alternate. Time per step is taken between the ends of the warm-up steps and of the last
step, so trainer set-up is excluded and everything a step costs is included.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.timing import REPO, bench_trainer

VARIANTS = ("plain", "lightning", "lightning+log+bar")


def default_config() -> dict[str, Any]:
    """``experiments/default.yaml`` as a dict."""
    import yaml

    return yaml.safe_load((REPO / "experiments" / "default.yaml").read_text())


def default_task(model_kwargs: dict[str, Any] | None = None) -> Any:
    """The default experiment's task, seeded (``model_kwargs`` replaces the model's)."""
    from seglab.tasks import SegmentationTask

    args = dict(default_config()["model"]["init_args"])
    if model_kwargs is not None:
        args["model_kwargs"] = model_kwargs
    torch.manual_seed(0)
    return SegmentationTask(**args)


def memory_batches(n: int, batch: int, size: int, classes: int) -> list[dict[str, torch.Tensor]]:
    """``n`` random batches of images and class masks."""
    gen = torch.Generator().manual_seed(0)
    return [
        {
            "image": torch.randn(batch, 3, size, size, generator=gen),
            "mask": torch.randint(0, classes, (batch, size, size), generator=gen),
        }
        for _ in range(n)
    ]


def plain_loop(task: Any, batches: list[dict[str, torch.Tensor]], warmup: int) -> float:
    """Seconds per step of a hand-written loop doing what the task's training step does
    (the task's optimiser and schedule, built by the same function)."""
    from seglab.models import main_logits
    from seglab.tasks.optim import build_optimizer

    built = build_optimizer(task.named_parameters(), task.hparams, len(batches), 1)
    opt, sched = built["optimizer"], built["lr_scheduler"]["scheduler"]
    task.train()
    marks = []
    for batch in batches:
        opt.zero_grad(set_to_none=True)
        loss, _ = task.criterion(main_logits(task(batch["image"])), batch["mask"])
        if not torch.isfinite(loss):
            raise FloatingPointError("non-finite loss")
        loss.backward()
        opt.step()
        sched.step()
        marks.append(time.perf_counter())
    return (marks[-1] - marks[warmup - 1]) / (len(batches) - warmup)


def lightning_loop(
    task: Any, batches: list[dict[str, torch.Tensor]], warmup: int, logging: bool, root: Path
) -> float:
    """Seconds per step of ``Trainer.fit`` on the same batches."""
    from lightning.pytorch.callbacks import Callback
    from torch.utils.data import DataLoader

    marks: list[float] = []

    class Marks(Callback):
        def on_train_batch_end(self, *args: Any) -> None:
            marks.append(time.perf_counter())

    trainer = bench_trainer(root, [Marks()], "cpu", logging, max_epochs=1)
    loader = DataLoader(batches, batch_size=None, shuffle=False)
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        trainer.fit(task, train_dataloaders=loader)
    return (marks[-1] - marks[warmup - 1]) / (len(batches) - warmup)


#: The tiny case: a model small enough that the loop's own cost shows.
TINY = {"model_kwargs": {"base_channels": 4, "depth": 3}, "batch": 4, "size": 32}


def loop_cases(args: argparse.Namespace) -> list[tuple[str, dict | None, int, int, int]]:
    """``(label, model_kwargs, batch, size, steps)``: the default model and a tiny one."""
    cfg = default_config()
    size, batch = cfg["data"]["dataset_kwargs"]["size"], cfg["data"]["batch_size"]
    kw, tb, ts = TINY["model_kwargs"], TINY["batch"], TINY["size"]
    opts = ", ".join(f"{k} {v}" for k, v in kw.items())
    n = args.loop_steps
    return [
        (f"default model, batch {batch} of {size}x{size}", None, batch, size, n),
        (
            f"tiny model ({opts}), batch {tb} of {ts}x{ts}",
            kw,
            tb,
            ts,
            args.tiny_factor * args.loop_steps,
        ),
    ]


def bench_loop(args: argparse.Namespace, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Times the variants on each case; one row per case."""
    classes = default_config()["model"]["init_args"]["num_classes"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, kwargs, b, s, n in loop_cases(args):
            batches = memory_batches(n, b, s, classes)
            times: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for r in range(args.loop_repeats):
                for variant in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
                    task = default_task(kwargs)
                    if variant == "plain":
                        t = plain_loop(task, batches, args.warmup)
                    else:
                        t = lightning_loop(task, batches, args.warmup, "+" in variant, Path(tmp))
                    times[variant].append(t)
            med = {v: statistics.median(times[v]) for v in VARIANTS}
            rows.append(
                {
                    "case": label,
                    "steps": n - args.warmup,
                    "median": med,
                    "spread": {k: (min(v), max(v)) for k, v in times.items()},
                }
            )
            log(
                f"{label}: "
                + ", ".join(f"{v} {med[v] * 1e3:.1f} ms" for v in VARIANTS)
                + f" ({args.loop_repeats} runs each)"
            )
    return rows


def render_loop(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """The report section of ``bench_loop``'s rows."""
    L = ["## seglab's Lightning loop against a plain PyTorch loop\n"]
    L.append(
        "The default experiment's task (model, loss, optimiser, per-step schedule) on batches "
        "held in memory; time per step after warm-up, median over "
        f"{args.loop_repeats} alternating run(s) of each variant. `lightning`: logger, "
        "progress bar, checkpointing, validation and model summary off. "
        "`+log+bar`: CSV logger writing every step and the progress bar on.\n"
    )
    L.append(
        "| Case | Timed steps per run | Plain loop ms/step | Lightning ms/step (overhead) | "
        "+log+bar ms/step (overhead) |"
    )
    L.append("|---|---:|---:|---:|---:|")

    def cell(variant: str, r: dict[str, Any]) -> str:
        t, (lo, hi) = r["median"][variant], r["spread"][variant]
        text = f"{t * 1e3:.1f} ({lo * 1e3:.1f}-{hi * 1e3:.1f})"
        if variant == "plain":
            return text
        extra = t - r["median"]["plain"]
        return f"{text}: {extra * 1e3:+.1f} ms, {100 * extra / r['median']['plain']:+.1f}%"

    for r in rows:
        L.append(
            f"| {r['case']} | {r['steps']} | " + " | ".join(cell(v, r) for v in VARIANTS) + " |"
        )
    L.append(
        "\nEach cell: median over the runs (fastest-slowest run in brackets); overhead = "
        "median minus the plain loop's median. Where the overhead comes from is not measured "
        "here."
    )
    return L + [""]
