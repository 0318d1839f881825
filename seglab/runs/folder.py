"""The run folder as Lightning callbacks.

``runs/<experiment>/<timestamp>/`` holds ``config.yaml`` (LightningCLI), ``metrics.csv`` (the CSV
logger), ``checkpoints/`` (best by the monitored metric, and ``last.ckpt``), ``summary.json``
(rewritten atomically after every validation) and ``predictions/`` (overlays of a few validation
images: image | truth | prediction; ``seglab predict`` writes masks to ``predictions/masks``).
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
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image

from seglab.data.io import atomic_write, safe_child
from seglab.metrics.segmentation import decide

SUMMARY_KEYS = ("val/mIoU", "val/pixel_acc", "val/mean_acc", "val/dice", "val/loss")


def new_run_dir(runs_root: str | Path, experiment: str) -> Path:
    """A fresh ``<root>/<experiment>/<timestamp>`` folder, shared with DDP child processes."""
    if os.environ.get("SEGLAB_RUN_DIR"):
        return Path(os.environ["SEGLAB_RUN_DIR"])
    base = Path(runs_root) / experiment
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run, n = base / stamp, 1
    while run.exists():
        run, n = base / f"{stamp}-{n}", n + 1
    run.mkdir(parents=True)
    os.environ["SEGLAB_RUN_DIR"] = str(run)
    return run


def latest_run_with_last(runs_root: str | Path, experiment: str) -> Path | None:
    """The newest run of an experiment that holds ``checkpoints/last.ckpt``."""
    base = Path(runs_root) / experiment
    runs = sorted(
        (p for p in base.glob("*") if (p / "checkpoints" / "last.ckpt").is_file()),
        key=lambda p: p.name,
    )
    return runs[-1] if runs else None


def palette(n: int) -> np.ndarray:
    """A fixed colour per class (class 0 black), ``(n, 3)`` uint8."""
    rng = np.random.default_rng(3)
    colours = rng.integers(40, 256, (max(n, 2), 3)).astype(np.uint8)
    colours[0] = 0
    base = [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
    ]
    for i, c in enumerate(base[: n - 1]):
        colours[i + 1] = c
    return colours


def overlay_row(
    image: torch.Tensor, target: torch.Tensor | None, pred: torch.Tensor, n: int
) -> np.ndarray:
    """``image | truth | prediction`` as one uint8 RGB strip (colours blended over the image)."""
    img = image.float()
    img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-6)
    img = img[:3] if img.shape[0] >= 3 else img[:1].expand(3, -1, -1)
    rgb = (img.permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
    pal = palette(n)

    def blend(lbl: torch.Tensor) -> np.ndarray:
        lab = lbl.cpu().numpy().astype(np.int64)
        col = pal[np.clip(lab, 0, len(pal) - 1)]
        col[lab >= len(pal)] = 255  # ignored pixels in white
        return (0.45 * rgb + 0.55 * col).astype(np.uint8)

    panels = [rgb, blend(target) if target is not None else rgb, blend(pred)]
    return np.concatenate(panels, axis=1)


class RunSummary(Callback):
    """Writes ``summary.json`` and the validation overlays of a run.

    Args:
        run_dir: The run folder.
        monitor: Metric that picks the best epoch.
        mode: ``max`` or ``min``.
        num_overlays: Validation images drawn into ``predictions/`` at the end of fit.
    """

    def __init__(
        self,
        run_dir: str | Path,
        monitor: str = "val/mIoU",
        mode: str = "max",
        num_overlays: int = 4,
    ):
        self.run_dir, self.monitor, self.mode = Path(run_dir), monitor, mode
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
            "experiment": self.run_dir.parent.name,
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
        per_case = getattr(pl_module, "per_case_scores", None)
        if per_case:
            summary["per_case"] = per_case
        atomic_write(self.run_dir / "summary.json", lambda f: json.dump(summary, f, indent=2), "w")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write(trainer, pl_module, status="finished")
        if trainer.is_global_zero:
            self.draw_overlays(trainer, pl_module)

    @torch.no_grad()
    def draw_overlays(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Draws ``image | truth | prediction`` strips for the first validation images."""
        dm = trainer.datamodule
        ds = getattr(dm, "datasets", {}).get("val") if dm is not None else None
        if ds is None or self.num_overlays <= 0:
            return
        out = self.run_dir / "predictions"
        out.mkdir(parents=True, exist_ok=True)
        was_training = pl_module.training
        pl_module.eval()
        n = pl_module.metric_classes if hasattr(pl_module, "metric_classes") else 2
        for i in range(min(self.num_overlays, len(ds))):
            item = ds[i]
            x = item["image"][None].to(pl_module.device)
            pred = decide(pl_module.predict_logits(x), pl_module.hparams.task)[0]
            strip = overlay_row(item["image"], item.get("mask"), pred, n)
            name = str(item["meta"].get("name", i))
            Image.fromarray(strip).save(safe_child(out, f"{name}.png"))
        pl_module.train(was_training)


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
