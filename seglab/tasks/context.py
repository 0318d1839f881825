"""Context-model task (FCN, DeepLab, PSPNet, DenseASPP): the auxiliary loss.

TTA and sliding-window inference (``tta``, ``sliding_window``) are options of every task
(:class:`seglab.tasks.base.SegmentationTask`); the context experiments set them.
"""

from __future__ import annotations

from typing import Any

import torch

from seglab.models import ModelOutput
from seglab.tasks.base import SegmentationTask


class ContextTask(SegmentationTask):
    """SegmentationTask with PSPNet's auxiliary loss.

    Args:
        aux_weight: Weight of the auxiliary head's loss (0.4 in PSPNet).
        **kwargs: See :class:`SegmentationTask` (``tta``, ``sliding_window``, ...).
    """

    def __init__(
        self,
        *args: Any,
        aux_weight: float = 0.4,
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
