"""Test-only callbacks for the reliability tests, importable by a ``seglab fit`` subprocess.

Passed as ``--trainer.callbacks+=tests.helpers_slow.<Name>`` (the subprocess runs from the repo
root, so ``tests`` is importable). Markers go to the file named by ``$SEGLAB_TEST_MARKER``.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import lightning as L
import torch


def _mark(text: str) -> None:
    path = os.environ.get("SEGLAB_TEST_MARKER")
    if path:
        Path(path).write_text(text)


def checkpoint_digests(trainer: L.Trainer) -> dict[str, str]:
    """``{file name: sha256}`` of the ``*.ckpt`` files in the run's checkpoint folder."""
    out = {}
    for cb in trainer.checkpoint_callbacks:
        folder = Path(cb.dirpath)
        for p in sorted(folder.glob("*.ckpt")):
            out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


class SlowBatches(L.Callback):
    """From ``from_epoch`` on, sleeps before every training batch; marks ``epoch step``."""

    def __init__(self, seconds: float = 0.5, from_epoch: int = 1) -> None:
        self.seconds, self.from_epoch = seconds, from_epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch >= self.from_epoch:
            if batch_idx >= 1:
                _mark(f"{trainer.current_epoch} {trainer.global_step}")
            time.sleep(self.seconds)


class SlowCheckpointWrite(L.Callback):
    """From the ``from_save``-th checkpoint on, writes half the file, marks, sleeps, finishes.

    Wraps the ``atomic_write`` that ``seglab.runs.checkpoint.AtomicCheckpointIO`` calls, so the real
    temporary-file-then-rename path runs; only the byte writing is slowed down.
    """

    def __init__(self, from_save: int = 3, seconds: float = 60.0) -> None:
        import seglab.runs.checkpoint as ck

        real = ck.atomic_write
        count = {"n": 0}

        def slow_atomic_write(path, write, mode="wb"):
            count["n"] += 1
            if count["n"] < from_save:
                return real(path, write, mode)

            def slow(f):
                buf = io.BytesIO()
                write(buf)
                data = buf.getvalue()
                half = len(data) // 2
                f.write(data[:half])
                f.flush()
                os.fsync(f.fileno())
                _mark(f"writing {path}")
                time.sleep(seconds)
                f.write(data[half:])

            return real(path, slow, mode)

        ck.atomic_write = slow_atomic_write


class StopAfterEpochs(L.Callback):
    """Stops training cleanly after ``epochs`` epochs (an interruption without a kill)."""

    def __init__(self, epochs: int = 1) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class PoisonBatch(L.Callback):
    """Fills the images of one training batch with NaN; keeps the checkpoint digests then."""

    snapshot: dict[str, str] = {}

    def __init__(self, epoch: int = 1, batch: int = 1) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            PoisonBatch.snapshot = checkpoint_digests(trainer)
            batch["image"].fill_(float("nan"))


class PoisonWeights(L.Callback):
    """After the last training batch of ``epoch``, sets one weight to NaN (a diverged step)."""

    snapshot: dict[str, str] = {}

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == trainer.num_training_batches - 1:
            PoisonWeights.snapshot = checkpoint_digests(trainer)
            with torch.no_grad():
                next(pl_module.parameters()).view(-1)[0] = float("nan")
