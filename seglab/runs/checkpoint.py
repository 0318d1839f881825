"""Checkpoint I/O that survives a kill at any moment and never runs code from a file.

``load_checkpoint_file`` (in :mod:`seglab.data.io`) and ``task_class`` (in
:mod:`seglab.tasks.base`) are re-exported here, where callers above the task layer look.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from seglab.data.io import _safe_globals, atomic_write, load_checkpoint_file
from seglab.tasks.base import SegmentationTask
from seglab.tasks.checkpoint import find_task_class


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes checkpoints to a temporary file, fsyncs, then renames; loads with weights_only."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        atomic_write(path, lambda f: torch.save(checkpoint, f))

    def load_checkpoint(
        self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint_file(path, map_location or "cpu")


class TopKCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that leaves exactly its ``save_top_k`` best files on disk.

    Lightning deletes the file a new best replaces, but one written just before a kill, or by
    an earlier life of a resumed run, is not in the restored top-k list and would stay forever
    (``best-epoch=001.ckpt`` beside ``best-epoch=004.ckpt``). After every top-k save, and at the
    end of fit, every file of this callback's name pattern that is not in its top-k is removed.
    """

    def _save_topk_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict) -> None:
        super()._save_topk_checkpoint(trainer, monitor_candidates)
        self.remove_stale(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.remove_stale(trainer)

    def remove_stale(self, trainer: L.Trainer) -> list[Path]:
        """Deletes this callback's files that are not among its top-k (global rank 0 only)."""
        if not trainer.is_global_zero or not self.dirpath or self.save_top_k < 0:
            return []
        prefix = (self.filename or "").split("{", 1)[0]
        if not prefix:
            return []
        keep = {Path(p).resolve() for p in [*self.best_k_models, self.best_model_path] if p}
        gone = []
        for path in Path(self.dirpath).glob(f"{prefix}*{self.FILE_EXTENSION}"):
            if path.resolve() not in keep and path.name != f"{self.CHECKPOINT_NAME_LAST}.ckpt":
                path.unlink(missing_ok=True)
                gone.append(path)
        return gone


def task_class(hparams: dict[str, Any]) -> type:
    """The seglab task class a checkpoint's hyper-parameters name (``_class_path``)."""
    return find_task_class(hparams, SegmentationTask)


def load_task(ckpt: str | Path, map_location: str = "cpu") -> Any:
    """The task of a checkpoint, rebuilt from its hyper-parameters alone (no config file),
    as the class it was trained with, in eval mode; loaded with ``weights_only=True``."""
    hparams = load_checkpoint_file(ckpt, map_location).get("hyper_parameters", {})
    cls = task_class(hparams)
    with torch.serialization.safe_globals(_safe_globals()):
        task = cls.load_from_checkpoint(str(ckpt), map_location=map_location, weights_only=True)
    return task.eval()


__all__ = [
    "AtomicCheckpointIO",
    "TopKCheckpoint",
    "_safe_globals",
    "load_checkpoint_file",
    "load_task",
    "task_class",
]
