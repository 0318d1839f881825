"""Volumetric evaluation for slice-wise CT models: per-patient Dice, pooled Dice and HD95.

Slices carry ``meta`` entries ``case_id``, ``z``, ``depth`` and ``spacing`` (from
``ct_slices``); the evaluator reassembles each patient's volume, so CT is always scored per
volume, never as a mean over slices. With ``lcc`` the liver is also scored after keeping its
largest 3D connected component, and both variants are logged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from seglab.metrics.volume_evaluator import VolumeEvaluator


class VolumeScores:
    """One evaluator per stage, fed from ``extra_eval`` and read at epoch end.

    Args:
        num_classes: Label classes of the volumes (2: liver; 3: liver and tumour).
        lcc: Also score with the largest-connected-component post-processing.
    """

    def __init__(self, num_classes: int, lcc: bool = True) -> None:
        self.lcc = lcc
        variants = (False, True) if lcc else (False,)
        self.evaluators = {s: VolumeEvaluator(num_classes, variants) for s in ("val", "test")}
        self.per_case: dict[str, dict[str, float]] = {}  # {"liver/dice": {case_id: value}}

    def update(self, stage: str, preds: torch.Tensor, batch: dict[str, Any]) -> None:
        """Adds a batch of slice predictions ``(B, H, W)``."""
        meta = batch.get("meta", {})
        if "case_id" not in meta or "mask" not in batch:
            return
        self.evaluators[stage].update(
            meta["case_id"], meta["z"], meta["depth"], meta["spacing"], preds, batch["mask"]
        )

    @staticmethod
    def gather(ev: VolumeEvaluator) -> None:
        """Under DDP, merges every process's slices and scores so each rank sees whole volumes.

        A DistributedSampler deals a volume's slices out to all ranks, so no rank holds a whole
        case; the slices received (and any case already scored) are exchanged with
        ``all_gather_object`` and the evaluator is refilled with the union.
        """
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (ev._pending, ev._scores, ev._saw_tumor))
        pending: dict[str, dict[str, Any]] = {}
        scores: dict[bool, dict[str, Any]] = {k: {} for k in ev._scores}
        for rank_pending, rank_scores, saw in parts:
            ev._saw_tumor |= saw
            for lcc, table in rank_scores.items():
                scores[lcc].update(table)
            for cid, entry in rank_pending.items():
                merged = pending.setdefault(cid, {**entry, "slices": {}})
                merged["slices"].update(entry["slices"])
        saw_tumor = ev._saw_tumor
        ev.reset()
        ev._scores, ev._saw_tumor = scores, saw_tumor
        for cid, entry in pending.items():
            zs = sorted(entry["slices"])
            preds = np.stack([entry["slices"][z][0] for z in zs])
            targets = np.stack([entry["slices"][z][1] for z in zs])
            n = len(zs)
            ev.update([cid] * n, zs, [entry["depth"]] * n, [entry["spacing"]] * n, preds, targets)

    def compute(self, stage: str) -> dict[str, float]:
        """Epoch scores as ``{"liver/dice_per_case": ..., "lcc/liver/dice_per_case": ...}``."""
        ev = self.evaluators[stage]
        self.gather(ev)
        out: dict[str, float] = {}
        raw = ev.compute(False)
        self.per_case = {}
        for cid, res in raw.pop("per_case").items():
            for name in ("liver", "tumor"):
                for metric in ("dice", "hd95"):
                    if name in res:
                        key = f"{name}/{metric}"
                        self.per_case.setdefault(key, {})[cid] = float(res[name][metric])
        out |= {k: float(v) for k, v in raw.items() if not math.isnan(float(v)) or "/" in k}
        if self.lcc:
            post = ev.compute(True)
            post.pop("per_case")
            out |= {f"lcc/{k}": float(v) for k, v in post.items() if "/" in k}
        ev.reset()
        return out
