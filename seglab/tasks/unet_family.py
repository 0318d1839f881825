"""U-Net family task: deep supervision, the classification-guided module, pruning.

Adds hooks to :class:`SegmentationTask` and nothing else: the steps stay in the base.

* Deep supervision: ``side_loss="sum"`` (default, the papers': U-Net 3+ sums its five hybrid
  losses, UNet++'s Keras code sums the heads' losses) gives
  ``L_main + sum_i w_i L_side_i``; ``side_loss="mean"`` divides that by ``1 + sum_i w_i``
  (seglab's first round: a loss scale independent of the number of heads).
* CGM: binary cross-entropy of ``ModelOutput.cls`` against "the image holds foreground",
  weighted by ``cls_weight``, added to the segmentation loss after the sum (or the mean): it
  is the classifier's own term, not one of the averaged heads.
* ``prune_level`` (U-Net++) sets the depth used for validation, test and prediction.
* Validation logs the metrics of each side output (``val/side<i>/mIoU``, ``val/side<i>/dice``)
  so the effect of deep supervision is visible. Each validation batch runs the network once:
  with deep supervision on, that one pass returns every head (``all_heads``) and the model's
  ``eval_logits`` gives the evaluation output from it; without side outputs, or with TTA or
  sliding windows (which run the model several times), no side metrics are logged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from seglab.metrics.segmentation import SegMetrics, decide
from seglab.models import ModelOutput
from seglab.models.output import all_heads
from seglab.tasks.base import SegmentationTask

SIDE_LOSSES = ("sum", "mean")


class UNetFamilyTask(SegmentationTask):
    """SegmentationTask for U-Net, U-Net++ and U-Net 3+ (and any model with side outputs).

    Args:
        side_weights: Loss weight per side output (deep to shallow as the model returns them);
            None gives every side output weight 1.
        side_loss: ``"sum"`` (the papers') or ``"mean"`` (weighted mean of main and side
            losses).
        cls_weight: Weight of the CGM's binary cross-entropy.
        prune_level: U-Net++ depth used at evaluation and prediction (1..depth-1), or None.
        side_metrics: Log validation metrics of each side output.
        **kwargs: See :class:`SegmentationTask`.
    """

    def __init__(
        self,
        *args: Any,
        side_weights: list[float] | None = None,
        side_loss: str = "sum",
        cls_weight: float = 1.0,
        prune_level: int | None = None,
        side_metrics: bool = True,
        **kwargs: Any,
    ) -> None:
        if side_loss not in SIDE_LOSSES:
            raise ValueError(f"side_loss must be one of {SIDE_LOSSES}, got {side_loss!r}.")
        super().__init__(*args, **kwargs)
        self.side_val_metrics: list[SegMetrics] = []
        #: Side outputs of the current validation batch's forward passes (None: not captured).
        self._side_capture: list[list[torch.Tensor]] | None = None
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
            loss = total if self.hparams.side_loss == "sum" else total / (1 + sum(ws))
        if output.cls is not None:
            with torch.autocast(device_type=output.cls.device.type, enabled=False):
                cls_loss = F.binary_cross_entropy_with_logits(
                    output.cls.float(), self.has_foreground(mask)
                )
            parts["loss/cls"] = cls_loss
            loss = loss + self.hparams.cls_weight * cls_loss
        return loss, parts

    def forward(self, x: torch.Tensor) -> torch.Tensor | ModelOutput:
        """As the base; while a validation batch captures side outputs, one all-heads pass.

        The pass returns the eval-mode logits (``model.eval_logits`` of the full output) and
        keeps the side outputs for :meth:`extra_eval`, so validation runs the network once.
        """
        if self.training or self._side_capture is None:
            return super().forward(x)
        with all_heads(self.model):
            out = super().forward(x)
        if not isinstance(out, ModelOutput):
            return out
        self._side_capture.append(out.side)
        combine = getattr(self.model, "eval_logits", None)
        return combine(out) if combine is not None else out.logits

    def captures_sides(self, batch: dict[str, Any]) -> bool:
        """Whether a validation batch scores side outputs: deep supervision on, no pruning."""
        return (
            bool(self.hparams.side_metrics)
            and "mask" in batch
            and bool(getattr(self.model, "deep_supervision", False))
            and getattr(self.model, "prune_level", None) is None
        )

    def on_validation_batch_start(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        super().on_validation_batch_start(batch, batch_idx, dataloader_idx)
        self._side_capture = [] if self.captures_sides(batch) else None

    def on_validation_batch_end(
        self, outputs: Any, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        super().on_validation_batch_end(outputs, batch, batch_idx, dataloader_idx)
        self._side_capture = None

    def extra_eval(self, stage: str, logits: torch.Tensor, batch: dict[str, Any]) -> None:
        super().extra_eval(stage, logits, batch)
        captured = self._side_capture
        if stage != "val" or captured is None or len(captured) != 1 or not captured[0]:
            return  # no side outputs, or TTA / sliding windows ran the model several times
        sides = captured[0]
        while len(self.side_val_metrics) < len(sides):
            h = self.hparams
            m = SegMetrics(self.metric_classes, h.task, h.ignore_index, self.class_names)
            self.side_val_metrics.append(m.to(self.device))
        for metric, side in zip(self.side_val_metrics, sides):
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
