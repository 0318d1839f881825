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


def task_class(hparams: dict[str, Any]) -> type:
    """The task class a checkpoint was trained with (LightningCLI's ``_class_path``).

    ``SegmentationTask.load_from_checkpoint`` alone would build the base class for a
    ``UNetFamilyTask`` checkpoint: Lightning drops ``_class_path`` because the base ``__init__``
    takes no ``**kwargs``, and with it the family's own arguments (``prune_level``, ...). Only
    classes already imported under ``seglab.tasks`` are accepted, never an arbitrary import.
    """
    import seglab.tasks
    from seglab.tasks import SegmentationTask

    path = hparams.get("_class_path") or "seglab.tasks.SegmentationTask"
    candidates = {SegmentationTask, *_subclasses(SegmentationTask)}
    for cls in candidates:
        names = {f"{cls.__module__}.{cls.__qualname__}"}
        if getattr(seglab.tasks, cls.__name__, None) is cls:
            names.add(f"seglab.tasks.{cls.__name__}")
        if path in names:
            return cls
    raise ValueError(
        f"The checkpoint was trained with task class {path!r}, which is not a seglab task "
        "imported in this process; import its module first."
    )


def _subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub, *_subclasses(sub)}
    return out


def load_task(ckpt: str | Path, map_location: str = "cpu") -> Any:
    """The task of a checkpoint, rebuilt from its hyper-parameters alone (no config file),
    as the class it was trained with, in eval mode; loaded with ``weights_only=True``."""
    hparams = load_checkpoint_file(ckpt, map_location).get("hyper_parameters", {})
    cls = task_class(hparams)
    with torch.serialization.safe_globals(_safe_globals()):
        task = cls.load_from_checkpoint(str(ckpt), map_location=map_location, weights_only=True)
    return task.eval()
