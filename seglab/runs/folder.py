"""The run folder as Lightning callbacks.

``runs/<experiment>/<timestamp>/`` holds ``config.yaml`` (LightningCLI), ``metrics.csv`` (the CSV
logger), ``checkpoints/`` (best by the monitored metric, and ``last.ckpt``), ``summary.json``
(rewritten atomically after every validation), ``confusion_matrix.png`` + ``per_class.csv`` and
``predictions/`` (overlays of a few validation images: image | truth | prediction, drawn by
:mod:`seglab.runs.pictures`). ``validate`` / ``test`` / ``predict`` from a checkpoint write into
its run folder, one sub-folder per invocation (:mod:`seglab.runs.placement`).
"""

from __future__ import annotations

import json
import math
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image

from seglab.data.io import atomic_write, safe_child
from seglab.runs.ownership import claim_run_dir, inherited_run_dir, is_rank_zero, share_run_dir
from seglab.runs.pictures import palette  # noqa: F401  (moved there; old import path)

SUMMARY_KEYS = ("val/mIoU", "val/pixel_acc", "val/mean_acc", "val/dice", "val/loss")


def new_run_dir(runs_root: str | Path, experiment: str, resume: Path | None = None) -> Path:
    """The run folder of this launch, claimed for ``experiment`` (see :mod:`seglab.runs.ownership`).

    Other ranks of a launch follow rank 0's folder (``SEGLAB_RUN_DIR``). Rank 0 uses an exported
    ``SEGLAB_RUN_DIR``, else the folder it resumes, else a fresh ``<root>/<experiment>/<time>``;
    a folder holding another experiment, or a run this launch does not resume, is refused.

    Args:
        runs_root: Folder that holds all runs.
        experiment: The experiment name.
        resume: Run folder of the checkpoint a ``fit`` resumes, or None.
    """
    run = inherited_run_dir()
    if run is not None and not is_rank_zero():
        run.mkdir(parents=True, exist_ok=True)
        return run
    if run is None and resume is not None:
        run = Path(resume)
    if run is None:
        base = Path(runs_root) / experiment
        base.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run, n = base / stamp, 1
        while True:
            try:
                run.mkdir()
                break
            except FileExistsError:
                run, n = base / f"{stamp}-{n}", n + 1
    claim_run_dir(run, experiment, resume)
    share_run_dir(run)
    return run


def latest_run_with_last(runs_root: str | Path, experiment: str) -> Path | None:
    """The newest run of an experiment that holds ``checkpoints/last.ckpt``."""
    base = Path(runs_root) / experiment
    runs = sorted(
        (p for p in base.glob("*") if (p / "checkpoints" / "last.ckpt").is_file()),
        key=lambda p: p.name,
    )
    return runs[-1] if runs else None


def spacing_note(trainer: L.Trainer) -> dict[str, Any]:
    """``{"spacing": ...}`` for CT data: ``unknown`` (naming the cases) where a header gives no
    voxel size, so HD95 is in voxels; empty for other data."""
    dm = trainer.datamodule
    ds = (getattr(dm, "datasets", None) or {}).get("val") if dm is not None else None
    cases = getattr(getattr(ds, "dataset", ds), "cases", None)
    if not cases:
        return {}
    from seglab.data.ct.volumes import header_spacing_known

    unknown = [c.case_id for c in cases if not header_spacing_known(c.image_path)]
    if not unknown:
        return {"spacing": "mm, from the NIfTI headers"}
    return {"spacing": "unknown", "spacing_unknown_cases": unknown}


class RunSummary(Callback):
    """Writes ``summary.json`` and the validation overlays of a run.

    Args:
        run_dir: The run folder.
        monitor: Metric that picks the best epoch.
        mode: ``max`` or ``min``.
        num_overlays: Unused here (kept for old callers); :class:`seglab.runs.pictures.RunPictures`
            draws the overlays.
        experiment: The experiment name (default: the run folder's parent folder name).

    ``summary.json``'s ``status`` says how the run ended: ``running``, ``finished``,
    ``stopped: non-finite loss at step N`` (or ``non-finite weights``), ``interrupted``
    (Ctrl-C) or ``failed: <error>``; a SIGKILL leaves ``running``.
    """

    def __init__(
        self,
        run_dir: str | Path,
        monitor: str = "val/mIoU",
        mode: str = "max",
        num_overlays: int = 4,
        experiment: str | None = None,
    ):
        self.run_dir, self.monitor, self.mode = Path(run_dir), monitor, mode
        self.experiment = experiment or self.run_dir.parent.name
        self.trained = False
        self.num_overlays = num_overlays
        self.final: dict[str, float] = {}
        self.best: dict[str, float] = {}
        self.best_epoch: int | None = None
        self.start = time.time()
        self.wall_before = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wall": self.wall()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = dict(state["best"]), state["best_epoch"]
        self.wall_before = float(state.get("wall", 0.0))
        self.start = time.time()

    def wall(self) -> float:
        """Seconds of training so far, across resumes."""
        return self.wall_before + time.time() - self.start

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.time()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.trained = True

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not self.trained or trainer.state.fn != "fit":
            return  # a failed start leaves no summary behind
        if isinstance(exception, FloatingPointError):
            what = "weights" if "weights" in str(exception).split("(")[0] else "loss"
            status = f"stopped: non-finite {what} at step {trainer.global_step}"
        elif isinstance(exception, KeyboardInterrupt):
            status = "interrupted"
        else:
            first = (str(exception).splitlines() or [""])[0][:200]
            status = f"failed: {type(exception).__name__}: {first}"
        self.write(trainer, pl_module, status=status)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        values = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if k.startswith("val/") and v.numel() == 1
        }
        self.final = values
        score = values.get(self.monitor)
        if score is not None and math.isfinite(score):
            prev = self.best.get(self.monitor)
            better = prev is None or (score > prev if self.mode == "max" else score < prev)
            if better:
                self.best_epoch = trainer.current_epoch
        for k, v in values.items():
            prev = self.best.get(k)
            lower_is_better = k.endswith("loss") or "hd95" in k
            if prev is None or (v < prev if lower_is_better else v > prev):
                self.best[k] = v
        self.write(trainer, pl_module)

    @rank_zero_only
    def write(
        self, trainer: L.Trainer, pl_module: L.LightningModule, status: str = "running"
    ) -> None:
        """Writes ``summary.json`` atomically."""
        h = pl_module.hparams
        summary = {
            "experiment": self.experiment,
            "run_dir": str(self.run_dir),
            "status": status,
            "model": h.get("model"),
            "encoder": h.get("encoder_name"),
            "task": h.get("task"),
            "monitor": self.monitor,
            "best_epoch": self.best_epoch,
            "epochs": trainer.current_epoch + (0 if status == "finished" else 1),
            "global_step": trainer.global_step,
            "wall_seconds": round(self.wall(), 2),
            "params": sum(p.numel() for p in pl_module.parameters()),
            "seed": int(os.environ.get("PL_GLOBAL_SEED", -1)),
            "final": self.final,
            "best": self.best,
        }
        from seglab.tasks.finetune import weights_record

        summary["weights"] = weights_record(pl_module)  # encoder weights: source, file, sha256
        per_case = getattr(pl_module, "per_case_scores", None)
        if per_case:
            summary["per_case"] = per_case
        summary |= spacing_note(trainer)
        atomic_write(self.run_dir / "summary.json", lambda f: json.dump(summary, f, indent=2), "w")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write(trainer, pl_module, status="finished")


class MaskWriter(BasePredictionWriter):
    """Writes predicted masks as PNG (class indices) under ``<out_dir>``, one per input image."""

    def __init__(self, out_dir: str | Path) -> None:
        super().__init__(write_interval="batch")
        self.out_dir = Path(out_dir)

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        names = batch["meta"]["name"]
        for pred, name in zip(prediction["pred"], names):
            arr = pred.cpu().numpy().astype(np.uint8)
            if arr.ndim == 3:  # multilabel: one file per label is overkill; pack bits
                arr = np.packbits(arr, axis=0)[0]
            Image.fromarray(arr).save(safe_child(self.out_dir, f"{Path(str(name)).stem}.png"))
