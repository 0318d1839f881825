"""The loss of every seglab task: a weighted sum of named terms.

Conventions (the README's "Conventions" section):

* ``task`` fixes the loss mode: ``binary`` (one logit channel, sigmoid, BCE), ``multiclass``
  (softmax, CE) or ``multilabel`` (independent sigmoids). smp's losses get the matching ``mode``.
* Pixels whose target equals ``ignore_index`` are removed *before* any term sees them (no
  one-hot of 255 is ever built), so they get exactly zero gradient.
* Terms run in float32 with autocast off: Dice sums overflow float16.
* Region terms (dice, jaccard, tversky) are per image by default and absent classes contribute
  0; ``batch_dice=True`` sums over the whole batch instead (nnU-Net's 2D setting), which keeps
  slices without foreground from dominating. An empty prediction on an empty target costs 0.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

TASKS = ("binary", "multiclass", "multilabel")
PIXEL_TERMS = ("ce", "wce", "focal", "lovasz")
REGION_TERMS = ("dice", "jaccard", "tversky")
SPATIAL_TERMS = ("ms_ssim", "iou")
LOSS_TERMS = PIXEL_TERMS + REGION_TERMS + SPATIAL_TERMS


def _smp_term(name: str, mode: str, kwargs: dict) -> nn.Module:
    if name == "dice":
        return smp.losses.DiceLoss(mode, from_logits=True, **kwargs)
    if name == "jaccard":
        return smp.losses.JaccardLoss(mode, from_logits=True, **kwargs)
    if name == "tversky":
        return smp.losses.TverskyLoss(mode, from_logits=True, **kwargs)
    if name == "focal":
        return smp.losses.FocalLoss(mode, **kwargs)
    if name == "lovasz":
        return smp.losses.LovaszLoss(mode, per_image=False, from_logits=True, **kwargs)
    raise KeyError(name)


class SegLoss(nn.Module):
    """Weighted sum of named loss terms with one ignore rule and one task setting.

    Args:
        terms: ``{name: weight}``, names from ``LOSS_TERMS`` (``ce``, ``wce``, ``dice``,
            ``focal``, ``jaccard``, ``lovasz``, ``tversky``, ``ms_ssim``, ``iou``).
        task: ``binary``, ``multiclass`` or ``multilabel``.
        num_classes: Logit channels (1 for binary).
        ignore_index: Target value to ignore, or None.
        class_weights: Per-class weights for ``ce``/``wce`` (binary: ``[w_bg, w_fg]``).
        batch_dice: Region terms sum over the whole batch instead of per image.
        term_kwargs: Extra keyword arguments per term, e.g. ``{"focal": {"gamma": 2}}``.
    """

    def __init__(
        self,
        terms: dict[str, float],
        task: str = "multiclass",
        num_classes: int = 2,
        ignore_index: int | None = None,
        class_weights: list[float] | None = None,
        batch_dice: bool = False,
        term_kwargs: dict[str, dict] | None = None,
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
        for name in terms:
            if name not in LOSS_TERMS:
                close = difflib.get_close_matches(name, LOSS_TERMS, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"Unknown loss term {name!r}.{hint} Valid: {LOSS_TERMS}.")
        self.terms = dict(terms)
        self.task, self.num_classes, self.ignore_index = task, num_classes, ignore_index
        self.batch_dice = batch_dice
        cw = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", cw, persistent=False)
        kw = term_kwargs or {}
        self.smp_terms = nn.ModuleDict(
            {n: _smp_term(n, task, kw.get(n, {})) for n in terms if n in ("focal", "lovasz")}
            | {n: _smp_term(n, task, kw.get(n, {})) for n in terms if n in REGION_TERMS}
        )
        self.spatial = None
        if any(n in SPATIAL_TERMS for n in terms):
            from seglab.losses.spatial import SpatialTerms

            self.spatial = SpatialTerms(task, kw)

    def valid_mask(self, target: torch.Tensor) -> torch.Tensor:
        """``(B, H, W)`` bool: pixels whose target is not the ignore index."""
        if self.task == "multilabel":
            if self.ignore_index is None:
                return torch.ones_like(target[:, 0], dtype=torch.bool)
            return (target != self.ignore_index).all(dim=1)
        if self.ignore_index is None:
            return torch.ones_like(target, dtype=torch.bool)
        return target != self.ignore_index

    def _flat(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor):
        """Valid pixels only, as a 1 x N image: logits ``(1, C, 1, N)``, target ``(1, 1, N)``
        (binary and multilabel: same shape as the logits, float)."""
        lg = logits.permute(1, 0, 2, 3)[:, valid][None, :, None]
        if self.task == "multilabel":
            tg = target.permute(1, 0, 2, 3)[:, valid][None, :, None].float()
        elif self.task == "binary":
            tg = target[valid][None, None, None].float()
        else:
            tg = target[valid][None, None]
        return lg, tg

    def _ce(self, lg: torch.Tensor, tg: torch.Tensor, pixel_w: torch.Tensor | None):
        """Cross-entropy (BCE for binary/multilabel), a class-weighted mean as in PyTorch:
        ``sum(w_class * w_pixel * l) / sum(w_class)``."""
        cw = self.class_weights
        if self.task == "multiclass":
            per = F.cross_entropy(lg, tg, reduction="none")
            wc = cw[tg] if cw is not None else torch.ones_like(per)
        else:
            per = F.binary_cross_entropy_with_logits(lg, tg, reduction="none")
            wc = torch.where(tg > 0.5, cw[-1], cw[0]) if cw is not None else torch.ones_like(per)
        num = per * wc
        if pixel_w is not None:
            num = num * pixel_w.reshape(*([1] * (per.ndim - 1)), -1)
        return num.sum() / wc.sum().clamp_min(1e-12)

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Computes the weighted loss.

        Args:
            logits: ``(B, C, H, W)``.
            target: ``(B, H, W)`` class indices (binary: 0/1), or ``(B, C, H, W)`` multilabel.
            weight: Optional per-pixel weight map ``(B, H, W)`` for ``wce``.

        Returns:
            The total loss and ``{term: value}`` (unweighted values).
        """
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            valid = self.valid_mask(target)
            safe_target = target
            if self.ignore_index is not None and self.task != "multilabel":
                safe_target = torch.where(valid, target, torch.zeros_like(target))
                bad = safe_target[valid] >= max(self.num_classes, 2)
                if bad.any():
                    raise ValueError(
                        f"Target values {sorted(set(safe_target[valid][bad].tolist()))[:10]} are "
                        f"outside [0, {max(self.num_classes, 2)}) and not ignore_index="
                        f"{self.ignore_index}; check the dataset's labels or num_classes."
                    )
            lg, tg = self._flat(logits, safe_target, valid)
            parts: dict[str, torch.Tensor] = {}
            for name in self.terms:
                if name == "ce":
                    parts[name] = self._ce(lg, tg, None)
                elif name == "wce":
                    if weight is None and self.training:
                        raise ValueError("Loss term 'wce' needs a weight map: set data.weight_map.")
                    # Evaluation batches carry no weight map: wce is then the plain CE.
                    pw = None if weight is None else weight[valid].float().unsqueeze(0)
                    parts[name] = self._ce(lg, tg, pw)
                elif name in ("focal", "lovasz"):
                    parts[name] = self.smp_terms[name](lg, tg)
                elif name in REGION_TERMS:
                    parts[name] = self._region(name, logits, safe_target, valid)
                else:
                    parts[name] = self.spatial(name, logits, safe_target, valid)
            total = sum(self.terms[n] * v for n, v in parts.items())
        return total, parts

    def _region(self, name: str, logits, target, valid) -> torch.Tensor:
        term: Callable = self.smp_terms[name]
        if self.batch_dice:
            return term(*self._flat(logits, target, valid))
        losses = [
            term(*self._flat(logits[i : i + 1], target[i : i + 1], valid[i : i + 1]))
            for i in range(logits.shape[0])
        ]
        return torch.stack(losses).mean()
