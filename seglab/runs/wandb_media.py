"""What a W&B run shows beyond scalars: per-class tables, the confusion matrix, image overlays.

:class:`WandbMedia` runs at each validation epoch where a W&B logger is attached (see
:mod:`seglab.runs.wandb_logging`); without one it does nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger

from seglab.metrics.segmentation import decide
from seglab.runs.confusion import (  # noqa: F401  (confusion_stats re-exported)
    confusion_image,
    confusion_stats,
)
from seglab.runs.pictures import label_map, to_rgb

ID_FILE = "wandb_run_id"


def wandb_loggers(trainer: L.Trainer) -> list[WandbLogger]:
    """The trainer's W&B loggers."""
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


# ------------------------------------------------------------------------------ callback
class WandbMedia(Callback):
    """Per-class table, confusion matrix and validation predictions to every W&B logger.

    Reads ``pl_module.val_metrics.confmat`` in ``on_validation_epoch_end``: Lightning calls the
    callbacks' hook before the module's, whose ``_eval_epoch_end`` resets the metrics.

    Args:
        num_images: Validation images logged with ground-truth and predicted masks (the first
            ones of the validation loader, the same ones every epoch); 0 logs none.
        every_n_epochs: Log media every n validation epochs (and always at the last one).
    """

    def __init__(self, num_images: int = 4, every_n_epochs: int = 1) -> None:
        self.num_images = num_images
        self.every_n_epochs = max(1, every_n_epochs)
        self._images: list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]] = []

    # ---------------------------------------------------------------- lifecycle
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for logger in wandb_loggers(trainer):
            run = logger.experiment
            if not hasattr(run, "define_metric"):
                continue
            run.define_metric("epoch")
            run.define_metric("val/*", step_metric="epoch")
            monitor = getattr(trainer.checkpoint_callback, "monitor", None)
            mode = getattr(trainer.checkpoint_callback, "mode", "max")
            if monitor:
                run.define_metric(monitor, step_metric="epoch", summary=mode)
            run_dir = Path(logger.save_dir or ".")
            if trainer.is_global_zero and run_dir.is_dir():
                (run_dir / ID_FILE).write_text(str(run.id))

    def _active(self, trainer: L.Trainer) -> bool:
        if trainer.sanity_checking or not trainer.is_global_zero or not wandb_loggers(trainer):
            return False
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        return last or (epoch + 1) % self.every_n_epochs == 0 or trainer.state.fn != "fit"

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._images = []

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if len(self._images) >= self.num_images or dataloader_idx != 0:
            return
        if not self._active(trainer) or not isinstance(outputs, torch.Tensor):
            return
        task = pl_module.hparams.get("task", "multiclass")
        preds = decide(outputs.detach(), task)
        masks = batch.get("mask") if isinstance(batch, Mapping) else None
        for i in range(min(self.num_images - len(self._images), preds.shape[0])):
            target = masks[i].cpu() if masks is not None else None
            self._images.append((batch["image"][i].cpu(), target, preds[i].cpu()))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active(trainer):
            return
        import wandb

        metrics = getattr(pl_module, "val_metrics", None)
        names = list(getattr(pl_module, "class_names", None) or [])
        payload: dict[str, Any] = {}
        confmat = getattr(metrics, "confmat", None)
        if confmat is not None and int(confmat.sum()) > 0:
            cm = confmat.detach().cpu().numpy()
            names = names if len(names) == cm.shape[0] else [f"class_{i}" for i in range(len(cm))]
            payload |= self._tables(cm, names, wandb)
        if self._images:
            payload["val/predictions"] = self._wandb_images(pl_module, names, wandb)
        self._images = []
        if not payload:
            return
        payload["epoch"] = trainer.current_epoch
        for logger in wandb_loggers(trainer):
            logger.log_metrics(payload, step=trainer.global_step)

    def _tables(self, cm: np.ndarray, names: list[str], wandb: Any) -> dict[str, Any]:
        stats = confusion_stats(cm)
        rows = [
            [name, float(stats["iou"][i]), float(stats["dice"][i]), int(stats["support"][i])]
            for i, name in enumerate(names)
            if stats["present"][i]
        ]
        out: dict[str, Any] = {
            "val/per_class": wandb.Table(columns=["class", "IoU", "Dice", "pixels"], data=rows)
        }
        if cm.ndim == 2:
            data = [
                [names[i], names[j], int(cm[i, j])]
                for i in range(len(names))
                for j in range(len(names))
            ]
            table = wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=data)
            out["val/confusion_matrix"] = wandb.plot_table(
                "wandb/confusion_matrix/v1",
                table,
                {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
                {"title": "Validation confusion matrix (pixels)"},
            )
            out["val/confusion_matrix_image"] = wandb.Image(
                confusion_image(cm, names), caption="rows: truth, normalised"
            )
        return out

    def _wandb_images(self, pl_module: L.LightningModule, names: list[str], wandb: Any) -> list:
        h = pl_module.hparams
        task = h.get("task", "multiclass")
        if task == "multilabel":
            labels = {0: "none"} | {i + 1: n for i, n in enumerate(names)}
        else:
            labels = dict(enumerate(names))
        ignore = h.get("ignore_index")
        if ignore is not None:
            labels[int(ignore)] = "ignore"
        out = []
        for i, (image, target, pred) in enumerate(self._images):
            masks = {"predictions": {"mask_data": label_map(pred, task), "class_labels": labels}}
            if target is not None:
                masks["ground_truth"] = {
                    "mask_data": label_map(target, task),
                    "class_labels": labels,
                }
            out.append(wandb.Image(to_rgb(image), masks=masks, caption=f"val {i}"))
        return out

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in wandb_loggers(trainer):
            summary = getattr(logger.experiment, "summary", None)
            if summary is None:
                continue
            summary["params"] = sum(p.numel() for p in pl_module.parameters())
            run_summary = Path(logger.save_dir or ".") / "summary.json"
            if run_summary.is_file():  # seglab's RunSummary wrote it in its own on_fit_end
                data = json.loads(run_summary.read_text())
                summary["wall_seconds"] = data.get("wall_seconds")
                summary["best_epoch"] = data.get("best_epoch")
                for k, v in (data.get("best") or {}).items():
                    summary[f"best/{k}"] = v
