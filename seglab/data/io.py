"""Safe file I/O: weights loaded without unpickling code, files written atomically."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import tempfile
import zipfile
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
    ``path`` (atomic on POSIX) and fsyncs the folder. The temporary file is removed on any
    error; a full disk is reported as one ``OSError`` naming the file, the space it needs and
    the space left (``torch.save`` itself only says ``unexpected pos``).

    Args:
        path: Destination.
        write: Called with the open temporary file object.
        mode: ``"wb"`` or ``"w"``.

    Raises:
        OSError: ``errno.ENOSPC`` when the device has no room for the file.
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
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError | RuntimeError):
            _raise_if_disk_full(path, write, mode, err)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class _CountingSink:
    """A write-only file object that only counts what is written to it."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: Any) -> int:
        n = len(data.encode() if isinstance(data, str) else data)
        self.size += n
        return len(data)

    def flush(self) -> None:
        pass


def _raise_if_disk_full(
    path: Path, write: Callable[[Any], None], mode: str, err: Exception
) -> None:
    """Turns a failed write on a full device into one ``OSError`` naming the file and sizes."""
    no_space = isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
    if not (no_space or "unexpected pos" in str(err) or isinstance(err, OSError)):
        return
    free = shutil.disk_usage(path.parent).free
    sink = _CountingSink()
    try:
        write(sink)
        needed: int | None = sink.size
    except Exception:
        needed = None
    if not no_space and (needed is None or needed <= free):
        return
    need = f"it needs {_human(needed)}" if needed is not None else "it needs more space"
    raise OSError(
        errno.ENOSPC,
        f"No space left on the device to write {path}: {need}, {_human(free)} free in "
        f"{path.parent}. Free some space or point run.root at a larger disk",
    ) from None


def _human(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def read_named(path: str | os.PathLike, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` (paths passed as ``str``); any failure to read the file ``path`` (truncated,
    corrupt, cut short by an interrupted copy) becomes one ``ValueError`` naming it."""
    try:
        return fn(*(str(a) if isinstance(a, Path) else a for a in args))
    except Exception as err:
        raise ValueError(
            f"Cannot read {path}: {type(err).__name__}: {err}. The file is truncated or corrupt "
            "(e.g. cut short by an interrupted copy or download): copy or download it again."
        ) from None


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
    """``torch.load(weights_only=True)``: a checkpoint that needs arbitrary code is refused.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: One line naming the file: empty (an interrupted write), truncated or not a
            checkpoint, or needing arbitrary objects unpickled (refused).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(
            f"Cannot load checkpoint {path}: the file is empty (0 bytes), the trace of an "
            "interrupted write. Use another checkpoint of the run (checkpoints/last.ckpt)."
        )
    if not zipfile.is_zipfile(path) and _looks_like_zip(path):
        raise ValueError(
            f"Cannot load checkpoint {path}: it is truncated ({size} bytes, the zip archive has "
            "no end record); it was not written completely. Use another checkpoint of the run, "
            "or copy it again."
        )
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        first = (str(err).splitlines() or [""])[0][:200]
        if isinstance(err, pickle.UnpicklingError) or "weights_only" in str(err):
            raise ValueError(
                f"Refusing to load checkpoint {path}: it cannot be read with weights_only=True "
                f"({type(err).__name__}: {first}). seglab never unpickles arbitrary objects; "
                "only load checkpoints written by seglab."
            ) from None
        raise ValueError(
            f"Cannot load checkpoint {path} ({size} bytes): it is corrupt or not a PyTorch "
            f"checkpoint ({type(err).__name__}: {first}). Use another checkpoint of the run."
        ) from None
    if not isinstance(obj, dict):
        raise ValueError(f"Checkpoint {path} holds a {type(obj).__name__}, not a checkpoint dict.")
    return obj


def _looks_like_zip(path: Path) -> bool:
    """True when the file starts like a zip archive (torch.save's format)."""
    with path.open("rb") as f:
        return f.read(4) == b"PK\x03\x04"
