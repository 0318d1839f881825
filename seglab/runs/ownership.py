"""Who may write into a run folder: one experiment per folder, one writer at a time.

* ``run.json`` (written when a launch claims a folder) names the experiment the folder belongs
  to. A later launch into a folder that already holds a run is refused unless it resumes that
  run (``--ckpt_path last`` or a checkpoint inside the folder) with the same experiment name.
* ``run.lock`` (created with ``O_EXCL`` by the writing process) names its holder: pid, host and
  start time. A second writer is refused with that holder in the message; a lock left by a dead
  process on this host (SIGKILL, power cut) is taken over.
* ``SEGLAB_RUN_DIR`` carries the folder from rank 0 to the other ranks of one launch (DDP
  children, other nodes). A rank 0 that finds the value *it set itself* in an earlier launch in
  the same process ignores it; a value the user exported is claimed by the rules above.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from seglab.data.io import atomic_write

ENV = "SEGLAB_RUN_DIR"
OWNER_FILE = "run.json"
LOCK_FILE = "run.lock"
_SET_HERE: dict[str, str] = {}  # the SEGLAB_RUN_DIR value this process exported itself
_RANK_VARS = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")


class RunFolderError(RuntimeError):
    """A launch may not write into this run folder; the message says why and what to do."""


def is_rank_zero() -> bool:
    """True unless the environment names this process a non-zero rank of a launch."""
    return all(os.environ.get(v, "0") in ("", "0") for v in _RANK_VARS)


def inherited_run_dir() -> Path | None:
    """The run folder this process must use because rank 0 of its launch chose it, or None.

    Non-zero ranks always follow ``SEGLAB_RUN_DIR``; rank 0 follows it when the user (or a
    launcher) exported it, not when this process set it for an earlier launch.
    """
    value = os.environ.get(ENV)
    if not value:
        return None
    if not is_rank_zero():
        return Path(value)
    return None if _SET_HERE.get(ENV) == value else Path(value)


def share_run_dir(run: Path) -> None:
    """Exports ``run`` to the other ranks of this launch (their environment is copied).

    A value the user exported stays the user's: a later launch in this process claims it again
    (and is refused unless it resumes), instead of taking it for this process's own.
    """
    if os.environ.get(ENV) == str(run) and _SET_HERE.get(ENV) != str(run):
        return
    os.environ[ENV] = _SET_HERE[ENV] = str(run)


def _owner(run: Path) -> dict[str, Any] | None:
    """The experiment record of a folder; legacy runs answer from ``summary.json``."""
    for name in (OWNER_FILE, "summary.json"):
        try:
            data = json.loads((run / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("experiment"):
            return data
    return None


def claim_run_dir(run: Path, experiment: str, resume: Path | None = None) -> None:
    """Makes ``run`` the folder of ``experiment``, refusing a folder that holds another run.

    Args:
        run: The folder (created when missing).
        experiment: This launch's experiment name.
        resume: The run folder of the checkpoint this launch resumes (fit only), or None.

    Raises:
        RunFolderError: ``run`` belongs to another experiment, or holds a run this launch does
            not resume.
    """
    run = Path(run)
    owner = _owner(run)
    used = run.is_dir() and any(p.name != LOCK_FILE for p in run.iterdir())
    if owner is not None and owner["experiment"] != experiment:
        raise RunFolderError(
            f"Run folder {run} belongs to experiment {owner['experiment']!r} "
            f"(started {owner.get('created', '?')}); this launch is experiment {experiment!r}. "
            f"A run folder holds one experiment: unset {ENV} (or point it at a new folder) to "
            "start a new run."
        )
    resuming = resume is not None and Path(resume).resolve() == run.resolve()
    if used and not resuming:
        raise RunFolderError(
            f"Run folder {run} already holds a run of {experiment!r}; a second launch would "
            "overwrite its checkpoints, config and summary. Resume it with --ckpt_path last (or "
            f"a checkpoint inside it), or start a new run (unset {ENV} or point it at a new "
            "folder)."
        )
    run.mkdir(parents=True, exist_ok=True)
    if owner is None or not (run / OWNER_FILE).is_file():
        record = {"experiment": experiment, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write(run / OWNER_FILE, lambda f: json.dump(record, f, indent=2), "w")


def remove_partial_writes(run: Path) -> list[Path]:
    """Deletes the temporary files of interrupted atomic writes (``.<name>.*.tmp``) in a run."""
    gone = []
    for folder in (run, run / "checkpoints"):
        for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
            tmp.unlink(missing_ok=True)
            gone.append(tmp)
    return gone


# ----------------------------------------------------------------------------------- lock
def _alive(pid: int) -> bool:
    """True when process ``pid`` runs on this host (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class RunLock:
    """An exclusive lock on a run folder, held by one process (``run.lock`` inside it).

    Args:
        run: The run folder.
    """

    def __init__(self, run: Path) -> None:
        self.path = Path(run) / LOCK_FILE
        self.held = False

    def acquire(self) -> RunLock:
        """Takes the lock, taking over a stale one; raises :class:`RunFolderError` if held."""
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_or_refuse(me)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            atexit.register(self.release)
            return self
        raise RunFolderError(f"Could not take the lock {self.path} (it keeps changing hands).")

    def _take_over_or_refuse(self, me: dict[str, Any]) -> None:
        try:
            holder = json.loads(self.path.read_text() or "{}")
        except FileNotFoundError:
            return  # released meanwhile: try again
        except (OSError, ValueError):
            holder = {}
        pid, host = holder.get("pid"), holder.get("host")
        if not holder and time.time() - self._mtime() < 5:
            time.sleep(0.2)  # being written right now
            return
        same_host = host == me["host"]
        if holder and not (same_host and (pid == me["pid"] or not _alive(int(pid)))):
            raise RunFolderError(
                f"Run folder {self.path.parent} is being written by pid {pid} on host {host} "
                f"(since {holder.get('started', '?')}; lock file {self.path}). Two writers "
                "would mix its metrics and checkpoints: wait for that run to end, or, if that "
                f"process is gone (another host, a lost node), delete {self.path}."
            )
        stale = self.path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
        try:  # rename first: of two processes taking over the same stale lock, one wins
            os.rename(self.path, stale)
            stale.unlink(missing_ok=True)
        except FileNotFoundError:
            pass

    def _mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    def release(self) -> None:
        """Removes the lock file if this process holds it."""
        if not self.held:
            return
        self.held = False
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            self.path.unlink(missing_ok=True)
