"""Volumetric evaluation for slice-wise CT models: per-patient Dice, pooled Dice and HD95.

Slices carry ``meta`` entries ``case_id``, ``z``, ``depth`` and ``spacing`` (from
``ct_slices``); the evaluator reassembles each patient's volume, so CT is always scored per
volume, never as a mean over slices. With ``lcc`` the liver is also scored after keeping its
largest 3D connected component, and both variants are logged.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from seglab.metrics.volume import VolumeEvaluator


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

    def compute(self, stage: str) -> dict[str, float]:
        """Epoch scores as ``{"liver/dice_per_case": ..., "lcc/liver/dice_per_case": ...}``."""
        ev = self.evaluators[stage]
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
