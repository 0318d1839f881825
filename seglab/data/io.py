"""Safe file I/O: weights loaded without unpickling code, files written atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def load_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Loads a state dict from ``.safetensors`` or a torch file, never executing pickled code.

    Args:
        path: Local file. Lightning checkpoints (``state_dict`` inside) are unwrapped.

    Returns:
        A flat ``{name: tensor}`` mapping.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is not a loadable weights file (for example it needs unpickling of
            arbitrary objects, which is refused).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weights file {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle.UnpicklingError and friends
        raise ValueError(
            f"Refusing to load {path}: it is not a plain tensor file ({type(err).__name__}: "
            f"{str(err).splitlines()[0]}). seglab loads weights with weights_only=True and never "
            "runs code from a file; re-save it as a state_dict or .safetensors."
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict.")
    return obj


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Writes a file so that a crash leaves either the old or the new content, never half.

    Writes to a temporary file in the same folder, flushes and fsyncs it, then renames it over
    ``path`` (atomic on POSIX) and fsyncs the folder.

    Args:
        path: Destination.
        write: Called with the open temporary file object.
        mode: ``"wb"`` or ``"w"``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def safe_child(root: str | os.PathLike, name: str) -> Path:
    """``root / name`` for a name derived from input data, refusing anything that escapes root."""
    root = Path(root).resolve()
    clean = Path(name).name  # drops any directory part, including '..'
    if clean in ("", ".", ".."):
        raise ValueError(f"Unusable output file name {name!r}.")
    out = (root / clean).resolve()
    if out.parent != root:
        raise ValueError(f"Output name {name!r} would leave the output folder {root}.")
    return out


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
