"""The quality benchmark through seglab's product: ``SegmentationTask`` and ``SegDataModule``
(the ``folder`` reader, albumentations crops, flips and rotations) under ``Trainer.fit``, against
smp's plain-loop steps interleaved in the same run, for the same seeds and steps.
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

from lightning.pytorch.callbacks import Callback

from benchmarks.gpu_step import sync
from benchmarks.isbi import MEAN, STD, Split, evaluate, evaluations, reader_kwargs
from benchmarks.quality_models import Side
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
    from benchmarks.quality_models import LOSS, MODEL, seglab_options

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


class Interleaved(Callback):
    """A Lightning callback that trains smp's plain-loop :class:`Side` one step per Lightning
    step, in the same process: before the Lightning step on even steps (after its loader drew
    the batch), after it on odd ones, so neither side always runs first.

    ``lightning`` holds each Lightning step's seconds, from one batch end to the next less the
    smp step run between them; ``smp`` holds each smp step's, drawing its batch included.
    """

    def __init__(self, side: Any, stream: Any, device: str) -> None:
        self.side, self.stream, self.device = side, stream, device
        self.i, self.last, self.inside = 0, None, 0.0
        self.lightning: list[float] = []
        self.smp: list[float] = []

    def _smp_step(self) -> None:
        start = time.perf_counter()
        x, y = next(self.stream)
        drawing = time.perf_counter() - start
        self.smp.append(drawing + self.side.step(x, y, self.i))
        self.inside = time.perf_counter() - start

    def on_train_batch_start(self, *a: Any) -> None:
        if self.i % 2 == 0:
            self._smp_step()

    def on_train_batch_end(self, *a: Any) -> None:
        if self.i % 2 == 1:
            self._smp_step()
        sync(self.device)
        now = time.perf_counter()
        if self.last is not None:
            self.lightning.append(now - self.last - self.inside)
        self.last, self.inside, self.i = now, 0.0, self.i + 1


def train_lightning(arch: str, seed: int, split: Split, args: argparse.Namespace) -> dict:
    """``Trainer.fit`` of seglab's task for ``args.steps`` steps with smp's plain-loop steps
    interleaved (:class:`Interleaved`); both sides' per-step times and scores.

    smp's side is built first (its own seeded init and dropout stream), then the global seed is
    set and the task built, so each side trains exactly as it would alone.
    """
    import lightning as L

    from benchmarks.quality import batches
    from seglab.tasks import SegmentationTask

    smp = Side("smp", arch, args, seed)
    stream = batches(split, args.batch, args.crop, seed, args.device)
    steps = Interleaved(smp, stream, args.device)
    L.seed_everything(seed, verbose=False)
    task = SegmentationTask(**task_kwargs(arch, args))
    quiet = contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO())
    with tempfile.TemporaryDirectory() as tmp, quiet[0], quiet[1]:
        accelerator = "gpu" if args.device.startswith("cuda") else "cpu"
        trainer = bench_trainer(Path(tmp), [steps], accelerator, False, max_steps=args.steps)
        trainer.fit(task, datamodule=datamodule(args))
    task.to(args.device)
    warm = max(1, args.warmup)  # the first Lightning time is step 1's: step 0 is never timed
    return {
        "lightning": {
            "times": steps.lightning[warm - 1 :],
            "scores": {v: evaluate(task, split, t, args.device) for v, t in evaluations(args.crop)},
        },
        "smp": {
            "times": steps.smp[warm:],
            "scores": {
                v: evaluate(smp.model, split, t, args.device) for v, t in evaluations(args.crop)
            },
        },
    }


def bench_lightning(
    args: argparse.Namespace, split: Split, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """For each product architecture and seed: the Lightning run with smp's plain-loop steps
    interleaved. One row per (architecture, seed)."""
    rows = []
    for arch in args.lightning_archs:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            runs = train_lightning(arch, seed, split, args)
            rows.append({"arch": arch, "seed": seed, **runs})
            log(
                f"product {arch} seed {seed}: mIoU whole "
                f"{runs['lightning']['scores']['whole']['mIoU']:.3f} / "
                f"{runs['smp']['scores']['whole']['mIoU']:.3f} (seglab task / smp plain)"
            )
    return rows
