"""Context-model task (FCN, DeepLab, PSPNet, DenseASPP): auxiliary loss, TTA, sliding window."""

from __future__ import annotations

from typing import Any

import torch

from seglab.models import ModelOutput
from seglab.models.inference import infer
from seglab.tasks.base import SegmentationTask


class ContextTask(SegmentationTask):
    """SegmentationTask with PSPNet's auxiliary loss and evaluation-time TTA / tiling.

    Args:
        aux_weight: Weight of the auxiliary head's loss (0.4 in PSPNet).
        tta: ``{"scales": [0.5, 0.75, 1.0, 1.25, 1.5, 1.75], "flip": true}`` for multi-scale
            and flip test-time augmentation at validate/test/predict, or None.
        sliding_window: ``{"window": [512, 512], "overlap": 0.33}`` to tile images larger than
            the training crop, or None.
        **kwargs: See :class:`SegmentationTask`.
    """

    def __init__(
        self,
        *args: Any,
        aux_weight: float = 0.4,
        tta: dict[str, Any] | None = None,
        sliding_window: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)

    def compute_loss(
        self, output: torch.Tensor | ModelOutput, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, parts = super().compute_loss(output, batch)
        if isinstance(output, ModelOutput) and output.aux is not None:
            aux, _ = self.criterion(output.aux, batch["mask"], batch.get("weight"))
            parts["loss/aux"] = aux
            loss = loss + self.hparams.aux_weight * aux
        return loss, parts

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hparams
        if not self.training and (h.tta or h.sliding_window):
            return infer(self.model, x, h.tta, h.sliding_window)
        return super().predict_logits(x)
