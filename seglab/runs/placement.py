"""Where an invocation writes: one folder per training run, sub-folders for what reads it.

``fit`` gets a fresh ``runs/<experiment>/<time>/`` (:func:`seglab.runs.folder.new_run_dir`).
``validate``, ``test`` and ``predict`` from a checkpoint write into that checkpoint's run folder,
one sub-folder per invocation: ``<run>/validate/<time>/``, ``<run>/test/<time>/``,
``<run>/predictions/<time>/`` (a checkpoint outside a run folder: the same sub-folders beside
it), or into ``--output DIR``. A run that fails before its first training step leaves nothing
behind (:func:`discard_unstarted`): no empty or config-only folders pile up between real runs.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

SUBFOLDERS = {"validate": "validate", "test": "test", "predict": "predictions"}
ENV = "SEGLAB_INVOCATION_DIR"  # shared with DDP child processes of one invocation


def stamp() -> str:
    """The time stamp of a folder name, ``YYYYmmdd-HHMMSS``."""
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def checkpoint_run_dir(ckpt_path: str | os.PathLike) -> Path | None:
    """The run folder holding ``<run>/checkpoints/<file>.ckpt``, or None."""
    ckpt = Path(ckpt_path).expanduser().resolve()
    if ckpt.parent.name == "checkpoints" and ckpt.parent.parent.is_dir():
        return ckpt.parent.parent
    return None


def unique_child(parent: Path, name: str) -> Path:
    """``parent/name``, or ``parent/name-1``, ``-2``, ... if taken (created here)."""
    path, n = parent / name, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            path, n = parent / f"{name}-{n}", n + 1


def _is_child_process() -> bool:
    return any(int(os.environ.get(k, "0") or 0) > 0 for k in ("LOCAL_RANK", "RANK", "NODE_RANK"))


def invocation_dir(
    subcommand: str, ckpt_path: str | os.PathLike | None, output: str | os.PathLike | None
) -> Path | None:
    """The folder of a ``validate`` / ``test`` / ``predict`` invocation (created), or None
    where it gets a run folder of its own (``fit``; evaluation without a checkpoint).

    Args:
        subcommand: ``fit``, ``validate``, ``test`` or ``predict``.
        ckpt_path: The checkpoint the invocation reads (``last``/``best`` are not paths).
        output: ``--output DIR``: used as given (created if missing).
    """
    if os.environ.get(ENV) and _is_child_process():
        return Path(os.environ[ENV])
    if output:
        path = Path(output).expanduser()
        path.mkdir(parents=True, exist_ok=True)
    elif subcommand not in SUBFOLDERS or not ckpt_path or str(ckpt_path) in ("last", "best"):
        return None
    else:
        run = checkpoint_run_dir(ckpt_path) or Path(ckpt_path).expanduser().resolve().parent
        path = unique_child(run / SUBFOLDERS[subcommand], stamp())
    os.environ[ENV] = str(path)
    return path


def has_results(path: Path) -> bool:
    """Whether a folder holds a checkpoint or a summary (anything worth keeping)."""
    return any(path.rglob("*.ckpt")) or (path / "summary.json").is_file()


def discard_unstarted(path: Path | None, created: bool, global_step: int = 0) -> bool:
    """Removes a folder this invocation created when it failed before its first step.

    Folders that existed before (a resumed run, a user's ``--output``) and folders holding a
    checkpoint or a summary are never touched. Empty parents up to the runs root go too.

    Returns:
        Whether the folder was removed.
    """
    if path is None or not created or not path.is_dir() or global_step > 0 or has_results(path):
        return False
    shutil.rmtree(path, ignore_errors=True)
    parent = path.parent
    for _ in range(2):  # <experiment>/ or <run>/predictions/, if nothing else is in it
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent
    return not path.exists()
