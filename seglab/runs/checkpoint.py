"""Checkpoint I/O that survives a kill at any moment and never runs code from a file.

``load_checkpoint_file`` (in :mod:`seglab.data.io`) and ``task_class`` (in
:mod:`seglab.tasks.base`) are re-exported here, where callers above the task layer look.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
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


__all__ = ["AtomicCheckpointIO", "_safe_globals", "load_checkpoint_file", "load_task", "task_class"]
