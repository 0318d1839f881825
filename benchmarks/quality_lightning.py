"""The quality benchmark through seglab's product: ``SegmentationTask`` and ``SegDataModule``
(the ``folder`` reader, albumentations crops, flips and rotations) under ``Trainer.fit``, against
smp in the plain loop, for the same seeds and steps; whole runs alternate.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.isbi import MEAN, STD, Split, evaluate, evaluations, reader_kwargs
from benchmarks.timing import bench_trainer


def datamodule(args: argparse.Namespace) -> Any:
    """seglab's data module on ISBI with the plain loop's augmentation and normalisation."""
    from seglab.data.datamodule import SegDataModule

    crop = args.crop
    return SegDataModule(
        dataset="folder",
        root=args.data,
        dataset_kwargs=reader_kwargs(),
        batch_size=args.batch,
        num_workers=0,  # the plain loop augments in the training process too
        cache=True,  # the plain loop holds the images in memory too
        mean=[MEAN],
        std=[STD],
        train_transforms=[
            {"name": "RandomCrop", "height": crop, "width": crop},
            {"name": "HorizontalFlip", "p": 0.5},
            {"name": "VerticalFlip", "p": 0.5},
            {"name": "RandomRotate90", "p": 0.5},
        ],
    )


def task_kwargs(arch: str, args: argparse.Namespace) -> dict[str, Any]:
    """The task's primitives: the plain loop's model, loss, optimiser and schedule."""
    from benchmarks.quality import LOSS, MODEL, seglab_options

    return {
        "model": MODEL.get(arch, arch),
        "num_classes": 1,
        "task": "binary",
        "encoder_name": args.encoder,
        "in_channels": 1,
        "model_kwargs": seglab_options(args).get(arch, {}),
        "loss": LOSS,
        "optimizer": "adamw",
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "scheduler": args.scheduler,
    }


def train_lightning(arch: str, seed: int, split: Split, args: argparse.Namespace) -> dict:
    """``Trainer.fit`` of seglab's task for ``args.steps`` steps; per-step times and scores."""
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    from seglab.tasks import SegmentationTask

    marks: list[float] = []

    class Marks(Callback):
        def on_train_batch_end(self, *a: Any) -> None:
            if args.device.startswith("cuda"):
                import torch

                torch.cuda.synchronize()
            marks.append(time.perf_counter())

    L.seed_everything(seed, verbose=False)
    task = SegmentationTask(**task_kwargs(arch, args))
    quiet = contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO())
    with tempfile.TemporaryDirectory() as tmp, quiet[0], quiet[1]:
        accelerator = "gpu" if args.device.startswith("cuda") else "cpu"
        trainer = bench_trainer(Path(tmp), [Marks()], accelerator, False, max_steps=args.steps)
        trainer.fit(task, datamodule=datamodule(args))
    times = [b - a for a, b in zip(marks, marks[1:], strict=False)][max(0, args.warmup - 1) :]
    task.to(args.device)
    return {
        "times": times,
        "scores": {v: evaluate(task, split, t, args.device) for v, t in evaluations(args.crop)},
    }


def bench_lightning(
    args: argparse.Namespace, split: Split, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """For each product architecture and seed: the Lightning run and smp's plain run, in
    alternating order. One row per (architecture, seed)."""
    from benchmarks.quality import train_plain

    rows = []
    for arch in args.lightning_archs:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            runs: dict[str, Any] = {}
            order = ("lightning", "smp") if seed % 2 == 0 else ("smp", "lightning")
            for side in order:
                if side == "lightning":
                    runs[side] = train_lightning(arch, seed, split, args)
                else:
                    r = train_plain(arch, seed, split, args, sides=("smp",))
                    runs[side] = {"times": r["times"]["smp"], "scores": r["scores"]["smp"]}
            rows.append({"arch": arch, "seed": seed, **runs})
            log(
                f"product {arch} seed {seed}: mIoU whole "
                f"{runs['lightning']['scores']['whole']['mIoU']:.3f} / "
                f"{runs['smp']['scores']['whole']['mIoU']:.3f} (seglab task / smp plain)"
            )
    return rows
