"""A CSV logger that keeps ``metrics.csv`` across resumes.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when it starts writing into a
folder that already has one, so ``--ckpt_path last`` (which continues in the same run folder)
would lose every row logged before the interruption. Here the existing header is read back and
new rows are appended under it; when new metric names appear the file is rewritten with the
union of the columns, old rows kept (Lightning's own behaviour for new keys).
"""

from __future__ import annotations

import csv
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    """``ExperimentWriter`` that continues an existing ``metrics.csv`` instead of deleting it."""

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if path.is_file():
            with path.open(newline="") as f:
                self.metrics_keys = list(next(csv.reader(f), []))


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives a resume into the same folder."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """The writer, created on first use (as in ``CSVLogger``)."""
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
