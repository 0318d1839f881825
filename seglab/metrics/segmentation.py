"""Epoch-level segmentation metrics from one accumulated confusion matrix.

Averaging rule (the README's "Conventions"): counts accumulate over the whole epoch (and are
summed across processes by torchmetrics), ratios are taken once at the end. A class absent from
both prediction and ground truth is left out of every mean (not 0, not NaN) and its per-class
value is not reported. Pixels labelled ``ignore_index`` change nothing. In binary mode the two
classes are background and foreground (decision: logit > 0, i.e. probability > 0.5); in
multilabel mode each label is its own binary problem and means run over labels.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


def decide(logits: torch.Tensor, task: str) -> torch.Tensor:
    """The task's decision rule: argmax (multiclass) or probability > 0.5 (binary, multilabel).

    Args:
        logits: ``(B, C, H, W)``.
        task: ``binary``, ``multiclass`` or ``multilabel``.

    Returns:
        ``(B, H, W)`` class indices, or ``(B, C, H, W)`` 0/1 for multilabel.
    """
    if task == "multiclass":
        return logits.argmax(dim=1)
    if task == "binary":
        return (logits[:, 0] > 0).long()
    return (logits > 0).long()


class SegMetrics(Metric):
    """Pixel accuracy, mean class accuracy, mIoU, Dice and per-class IoU/Dice.

    Args:
        num_classes: Classes scored (binary: 2, background and foreground).
        task: ``binary``, ``multiclass`` or ``multilabel`` (then ``num_classes`` labels).
        ignore_index: Target value to leave out, or None.
        class_names: Names used in the per-class keys; ``class_i`` by default.
    """

    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        task: str = "multiclass",
        ignore_index: int | None = None,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.task, self.num_classes, self.ignore_index = task, num_classes, ignore_index
        self.class_names = list(class_names or [f"class_{i}" for i in range(num_classes)])
        shape = (num_classes, 2, 2) if task == "multilabel" else (num_classes, num_classes)
        self.add_state("confmat", torch.zeros(shape, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Adds a batch: ``preds`` from :func:`decide`, ``target`` of the same shape."""
        preds, target = preds.detach().long(), target.detach().long()
        k = self.num_classes
        if self.task == "multilabel":
            valid = (target != self.ignore_index) if self.ignore_index is not None else None
            for c in range(k):
                t, p = target[:, c], preds[:, c]
                if valid is not None:
                    t, p = t[valid[:, c]], p[valid[:, c]]
                self.confmat[c] += torch.bincount((t * 2 + p).reshape(-1), minlength=4).view(2, 2)
            return
        valid = torch.ones_like(target, dtype=torch.bool)
        if self.ignore_index is not None:
            valid = target != self.ignore_index
        t, p = target[valid], preds[valid]
        if t.numel() and (t.min() < 0 or t.max() >= k):
            bad = sorted(set(t[(t < 0) | (t >= k)].unique().tolist()))
            raise ValueError(
                f"Target values {bad[:10]} are outside [0, {k}) and not the ignore index "
                f"({self.ignore_index}): fix the labels, num_classes or data.ignore_index."
            )
        self.confmat += torch.bincount(t * k + p, minlength=k * k).view(k, k)

    def compute(self) -> dict[str, torch.Tensor]:
        """Returns ``pixel_acc``, ``mean_acc``, ``mIoU``, ``dice``, ``IoU/<name>``, ``dice/<name>``
        for every class present in prediction or ground truth."""
        cm = self.confmat.double()
        if self.task == "multilabel":
            tp, fp, fn, tn = cm[:, 1, 1], cm[:, 0, 1], cm[:, 1, 0], cm[:, 0, 0]
            pixel_acc = (tp + tn).sum() / cm.sum().clamp_min(1)
        else:
            tp = cm.diag()
            fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
            pixel_acc = tp.sum() / cm.sum().clamp_min(1)
        gt, union = tp + fn, tp + fp + fn
        present = union > 0
        iou = tp / union.clamp_min(1)
        dice = 2 * tp / (2 * tp + fp + fn).clamp_min(1)
        acc = tp / gt.clamp_min(1)
        out = {
            "pixel_acc": pixel_acc,
            "mean_acc": acc[gt > 0].mean() if (gt > 0).any() else torch.tensor(1.0),
            "mIoU": iou[present].mean() if present.any() else torch.tensor(1.0),
            "dice": dice[present].mean() if present.any() else torch.tensor(1.0),
        }
        for i, name in enumerate(self.class_names):
            if present[i]:
                out[f"IoU/{name}"] = iou[i]
                out[f"dice/{name}"] = dice[i]
        return {k: v.float() for k, v in out.items()}
