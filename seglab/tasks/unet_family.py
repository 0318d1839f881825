"""U-Net family task: deep supervision, the classification-guided module, pruning.

Adds hooks to :class:`SegmentationTask` and nothing else: the steps stay in the base.

* Deep supervision: the loss is the weighted mean of the main and side-output losses,
  ``(L_main + sum_i w_i L_side_i) / (1 + sum_i w_i)``; with all weights 1 this is U-Net++'s mean
  of the head losses (U-Net 3+ sums them, which differs only by a constant factor).
* CGM: binary cross-entropy of ``ModelOutput.cls`` against "the image holds foreground",
  weighted by ``cls_weight``.
* ``prune_level`` (U-Net++) sets the depth used for validation, test and prediction.
* Validation logs the metrics of each side output (``val/side<i>/mIoU``, ``val/side<i>/dice``)
  so the effect of deep supervision is visible.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from seglab.metrics.segmentation import SegMetrics, decide
from seglab.models import ModelOutput
from seglab.models.output import all_heads
from seglab.tasks.base import SegmentationTask


class UNetFamilyTask(SegmentationTask):
    """SegmentationTask for U-Net, U-Net++ and U-Net 3+ (and any model with side outputs).

    Args:
        side_weights: Loss weight per side output (deep to shallow as the model returns them);
            None gives every side output weight 1.
        cls_weight: Weight of the CGM's binary cross-entropy.
        prune_level: U-Net++ depth used at evaluation and prediction (1..depth-1), or None.
        side_metrics: Log validation metrics of each side output.
        **kwargs: See :class:`SegmentationTask`.
    """

    def __init__(
        self,
        *args: Any,
        side_weights: list[float] | None = None,
        cls_weight: float = 1.0,
        prune_level: int | None = None,
        side_metrics: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.side_val_metrics: list[SegMetrics] = []
        if prune_level is not None:
            if not hasattr(self.model, "prune_level"):
                raise ValueError(
                    f"prune_level needs a prunable model (unetplusplus), not {self.hparams.model!r}"
                )
            self.model.prune_level = prune_level

    def has_foreground(self, mask: torch.Tensor) -> torch.Tensor:
        """``(B, 1)`` float: whether each image holds any foreground (ignored pixels aside)."""
        fg = mask > 0
        if self.hparams.ignore_index is not None:
            fg &= mask != self.hparams.ignore_index
        return fg.flatten(1).any(1, keepdim=True).float()

    def compute_loss(
        self, output: torch.Tensor | ModelOutput, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, parts = super().compute_loss(output, batch)
        if not isinstance(output, ModelOutput):
            return loss, parts
        mask, weight = batch["mask"], batch.get("weight")
        if output.side:
            ws = self.hparams.side_weights or [1.0] * len(output.side)
            if len(ws) != len(output.side):
                raise ValueError(
                    f"side_weights has {len(ws)} entries; the model has {len(output.side)} sides."
                )
            total = loss
            for i, (w, side) in enumerate(zip(ws, output.side)):
                side_loss, _ = self.criterion(side, mask, weight)
                parts[f"loss/side{i}"] = side_loss
                total = total + w * side_loss
            loss = total / (1 + sum(ws))
        if output.cls is not None:
            with torch.autocast(device_type=output.cls.device.type, enabled=False):
                cls_loss = F.binary_cross_entropy_with_logits(
                    output.cls.float(), self.has_foreground(mask)
                )
            parts["loss/cls"] = cls_loss
            loss = loss + self.hparams.cls_weight * cls_loss
        return loss, parts

    def extra_eval(self, stage: str, logits: torch.Tensor, batch: dict[str, Any]) -> None:
        super().extra_eval(stage, logits, batch)
        if stage != "val" or not self.hparams.side_metrics or "mask" not in batch:
            return
        if getattr(self.model, "prune_level", None) is not None:
            return
        with torch.no_grad(), all_heads(self.model):
            out = self.model(batch["image"])
        if not isinstance(out, ModelOutput) or not out.side:
            return
        while len(self.side_val_metrics) < len(out.side):
            h = self.hparams
            m = SegMetrics(self.metric_classes, h.task, h.ignore_index, self.class_names)
            self.side_val_metrics.append(m.to(self.device))
        for metric, side in zip(self.side_val_metrics, out.side):
            metric.update(decide(side, self.hparams.task), batch["mask"])

    def extra_eval_epoch_end(self, stage: str) -> dict[str, float]:
        values = super().extra_eval_epoch_end(stage)
        if stage == "val":
            for i, metric in enumerate(self.side_val_metrics):
                if metric.update_called:
                    res = metric.compute()
                    values |= {f"side{i}/mIoU": res["mIoU"], f"side{i}/dice": res["dice"]}
                metric.reset()
        return values
