"""Logs that read well in a file: plain progress lines, and known-harmless noise filtered once.

Lightning's progress bar redraws one terminal line; written to a file (SLURM, ``nohup``, a
pipe) it shows nothing until the end. :class:`ProgressLog` prints a plain line every
``every_n_steps`` training steps and one per epoch (with the validation scores), flushed, when
stdout is not a terminal (or always, with ``force``)::

    [seglab] epoch 1/25 step 20/32 | train/loss 0.8123 | lr 2.95e-03 | 0.41 s/step | epoch eta 5 s
    [seglab] epoch 1/25 done in 14 s | train/loss 0.7012 | val/mIoU 0.4120 | val/dice 0.5011

:func:`quiet_known_noise` filters, in one place, messages every seglab command printed that
say nothing about the run: the ``_pytree`` ``LeafSpec`` deprecation inside Lightning, the
LitLogger tip, "The dirpath has changed" on a resume into the same run folder, and the
"0 Total Flops" line of the model summary (the FLOPs of a summary without an example input).
"""

from __future__ import annotations

import logging
import re
import sys
import time
import warnings
from collections.abc import Mapping
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

PREFIX = "[seglab]"
VAL_EVERY_S = 60.0  # a validation slower than this prints where it is
WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)",  # torch 2.14 deprecation inside Lightning's _pytree
    r"The dirpath has changed from",  # a resume writes into its own run folder on purpose
)
LOG_LINES = (
    re.compile(r"^.*Tip: For seamless cloud logging.*$", re.M),  # Lightning's LitLogger tip
    re.compile(r"^\s*0\s+Total Flops\s*$\n?", re.M),  # summary without example input
    re.compile(r"^Trainer already configured with model summary callbacks.*$", re.M),  # ours
)


class _DropLines(logging.Filter):
    """Removes the :data:`LOG_LINES` from log records (the record goes if nothing is left)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        new = msg
        for pattern in LOG_LINES:
            new = pattern.sub("", new)
        if new == msg:
            return True
        record.msg, record.args = new.rstrip("\n"), None
        return bool(new.strip())


_QUIET = False


def quiet_known_noise() -> None:
    """Filters the known-harmless warnings and log lines (idempotent)."""
    global _QUIET
    for message in WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    if _QUIET:
        return
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.pytorch.callbacks.model_summary",
        "lightning.pytorch.callbacks.rich_model_summary",
        "lightning.pytorch.trainer.connectors.callback_connector",
    ):
        logging.getLogger(name).addFilter(_DropLines())
    _QUIET = True


def _fmt(value: float) -> str:
    small_or_large = value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4)
    return f"{value:.2e}" if small_or_large else f"{value:.4f}"


def _headline(key: str) -> bool:
    """Epoch-level scores worth a log line: ``val/mIoU``, not ``val/IoU/<class>``."""
    return key.count("/") <= 1 or key.endswith("dice_per_case")


def _seconds(s: float) -> str:
    s = int(round(s))
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
        if s >= 3600
        else (f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s")
    )


def file_friendly_trainer(trainer_cfg: Mapping[str, Any], kwargs: dict[str, Any]) -> list[Callback]:
    """Trainer settings for a log that is a file: no progress bar (unless set) when stdout is
    not a terminal, and the plain-text model summary (whose "0 Total Flops" line is filtered)
    instead of the rich one. Updates ``kwargs``; returns the callbacks to add."""
    from lightning.pytorch.callbacks import ModelSummary

    if trainer_cfg.get("enable_progress_bar") is None and not sys.stdout.isatty():
        kwargs["enable_progress_bar"] = False
    user = trainer_cfg.get("callbacks") or []
    if trainer_cfg.get("enable_model_summary") is False or any(
        isinstance(c, ModelSummary) for c in user
    ):
        return []
    return [ModelSummary(max_depth=1)]


class ProgressLog(Callback):
    """Plain progress lines for logs written to a file.

    Args:
        every_n_steps: A line every this many training steps (0: only per epoch; None: the
            trainer's ``log_every_n_steps``).
        force: Print even when stdout is a terminal (where the progress bar shows progress).
        stream: Where lines go (``sys.stdout`` at print time by default).
    """

    def __init__(
        self, every_n_steps: int | None = None, force: bool = False, stream: TextIO | None = None
    ) -> None:
        self.every_n_steps, self.force, self.stream = every_n_steps, force, stream
        self.epoch_start = self.step_start = self.val_start = self.val_said = time.time()
        self.steps_timed = 0

    def enabled(self, trainer: L.Trainer) -> bool:
        """Rank zero only, and only when stdout is not a terminal unless ``force``."""
        if not trainer.is_global_zero:
            return False
        out = self.stream or sys.stdout
        return self.force or not (hasattr(out, "isatty") and out.isatty())

    @rank_zero_only
    def say(self, text: str) -> None:
        """Prints one flushed line."""
        out = self.stream or sys.stdout
        print(f"{PREFIX} {text}", file=out, flush=True)

    @staticmethod
    def _epochs(trainer: L.Trainer) -> str:
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        return f"epoch {trainer.current_epoch + 1}/{total}"

    @staticmethod
    def _scalars(trainer: L.Trainer, prefix: str, keys: tuple[str, ...] = ()) -> list[str]:
        out = []
        for k, v in trainer.callback_metrics.items():
            if not k.startswith(prefix) or (keys and k not in keys):
                continue
            if getattr(v, "numel", lambda: 1)() == 1:
                out.append(f"{k} {_fmt(float(v))}")
        return out

    @staticmethod
    def _lr(trainer: L.Trainer) -> str | None:
        if not trainer.optimizers:
            return None
        return f"lr {trainer.optimizers[0].param_groups[0]['lr']:.2e}"

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_start = self.step_start = time.time()
        self.steps_timed = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        self.steps_timed += 1
        every = self.every_n_steps
        if every is None:  # the trainer's, but at least four lines in a short epoch
            total = trainer.num_training_batches
            short = isinstance(total, int) and 0 < total < 4 * trainer.log_every_n_steps
            every = max(1, total // 4) if short else trainer.log_every_n_steps
        if not every or (idx + 1) % every or not self.enabled(trainer):
            return
        per_step = (time.time() - self.step_start) / max(1, self.steps_timed)
        total = trainer.num_training_batches
        parts = [f"{self._epochs(trainer)} step {idx + 1}/{total}"]
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and getattr(loss, "numel", lambda: 0)() == 1:
            parts.append(f"train/loss {_fmt(float(loss))}")
        parts += [p for p in [self._lr(trainer)] if p]
        parts.append(f"{per_step:.2f} s/step")
        if isinstance(total, int) and total > idx + 1:
            parts.append(f"epoch eta {_seconds(per_step * (total - idx - 1))}")
        self.say(" | ".join(parts))
        self.step_start, self.steps_timed = time.time(), 0

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.val_start = self.val_said = time.time()

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        """A line at most every :data:`VAL_EVERY_S` seconds while a slow validation runs."""
        now = time.time()
        if now - self.val_said < VAL_EVERY_S or not self.enabled(trainer):
            return
        self.val_said = now
        what = "sanity check" if trainer.sanity_checking else "validation"
        total = trainer.num_sanity_val_batches if trainer.sanity_checking else None
        total = (total or trainer.num_val_batches or ["?"])[dataloader_idx]
        per = (now - self.val_start) / (idx + 1)
        self.say(f"{what} batch {idx + 1}/{total} | {per:.1f} s/batch")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled(trainer):
            return
        parts = [f"{self._epochs(trainer)} done in {_seconds(time.time() - self.epoch_start)}"]
        parts += self._scalars(trainer, "train/", ("train/loss",))
        parts += [p for p in self._scalars(trainer, "val/") if _headline(p.split(" ")[0])]
        self.say(" | ".join(parts))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate" and self.enabled(trainer):
            self.say("validation: " + " | ".join(self._scalars(trainer, "val/")))

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.enabled(trainer):
            self.say("test: " + " | ".join(self._scalars(trainer, "test/")))
