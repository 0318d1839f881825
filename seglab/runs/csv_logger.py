"""A CSV logger that keeps ``metrics.csv`` across resumes, without the rows of a lost life.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts writing into a
folder that already has one, so ``--ckpt_path last`` (which continues in the same run folder)
would lose every row logged before the interruption. Here the existing header is read back and
new rows are appended under it; when new metric names appear the file is rewritten with the
union of the columns, old rows kept (Lightning's own behaviour for new keys).

On a resume from a checkpoint at global step ``G`` (``resume_step``), the rows logged at step
``G`` or later belong to the part of the run that the checkpoint does not hold (a partial epoch
before a kill, an epoch whose checkpoint write was interrupted): they are dropped, and the file
is rewritten atomically before the first new row, so no step appears twice. A torn last line
(a kill during an append) is dropped too.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from seglab.data.io import atomic_write


def rows_before(path: Path, step: int) -> tuple[list[str], list[list[str]]]:
    """The header and the complete rows of ``metrics.csv`` logged before global step ``step``."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        rows = list(reader)
    col = header.index("step") if "step" in header else None
    kept = []
    for row in rows:
        if len(row) != len(header):
            continue  # torn by a kill during the append
        try:
            if col is not None and int(float(row[col])) >= step:
                continue
        except ValueError:
            continue
        kept.append(row)
    return header, kept


def truncate_after(path: Path, step: int) -> int:
    """Rewrites ``metrics.csv`` atomically without the rows at ``step`` or later.

    Returns:
        The number of rows dropped.
    """
    with path.open(newline="") as f:
        total = sum(1 for _ in f) - 1
    header, kept = rows_before(path, step)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(kept)
    atomic_write(path, lambda f: f.write(buf.getvalue()), "w")
    return max(total - len(kept), 0)


class _AppendingWriter(ExperimentWriter):
    """``ExperimentWriter`` that continues an existing ``metrics.csv`` instead of deleting it."""

    resume_step: int | None = None

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if path.is_file():
            if self.resume_step is not None:
                truncate_after(path, self.resume_step)
            with path.open(newline="") as f:
                self.metrics_keys = list(next(csv.reader(f), []))


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives a resume into the same folder.

    Args:
        *args: As ``CSVLogger``.
        resume_step: The global step of the checkpoint a fit resumes from; rows logged at this
            step or later are dropped from an existing ``metrics.csv``. None: keep every row.
        **kwargs: As ``CSVLogger``.
    """

    def __init__(self, *args, resume_step: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """The writer, created on first use (as in ``CSVLogger``)."""
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            writer_class = type("_Writer", (_AppendingWriter,), {"resume_step": self.resume_step})
            self._experiment = writer_class(log_dir=self.log_dir)
        return self._experiment
