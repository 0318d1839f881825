"""Checkpoint I/O that survives a kill at any moment and never runs code from a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from seglab.io import atomic_write


def _safe_globals() -> list[Any]:
    """Non-tensor types that Lightning puts into checkpoints and that are safe to rebuild."""
    import pathlib

    from lightning.fabric.utilities.data import AttributeDict

    return [AttributeDict, pathlib.PosixPath, pathlib.WindowsPath]


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)``: a checkpoint that needs arbitrary code is refused."""
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(
            f"Refusing to load checkpoint {path}: it cannot be read with weights_only=True "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200]}). seglab never unpickles "
            "arbitrary objects; only load checkpoints written by seglab."
        ) from None


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
