"""Per-patient evaluation of slice predictions: reassembled volumes scored the LiTS way.

See :mod:`seglab.metrics.volume` for the conventions (structures, empty cases, HD95, per-case
versus global Dice).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from seglab.metrics.volume import STRUCTURES, dice, hd95, postprocess_liver


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _spacing_rows(spacings: Any, n: int) -> list[tuple[float, float, float]]:
    """Spacings as ``n`` rows of 3 floats: accepts ``(B, 3)`` arrays/tensors, a list of ``B``
    tuples, or the default-collated form (a list of 3 tensors of length ``B``)."""
    if isinstance(spacings, list | tuple) and spacings and hasattr(spacings[0], "shape"):
        cols = [_to_numpy(c).reshape(-1) for c in spacings]
        if len(cols) == 3 and all(len(c) == n for c in cols):
            arr = np.stack(cols, 1)
        else:
            arr = np.stack([c.reshape(3) for c in cols])
    else:
        arr = _to_numpy(spacings).astype(np.float64)
    arr = np.asarray(arr, np.float64).reshape(n, 3)
    return [tuple(float(v) for v in row) for row in arr]


class VolumeEvaluator:
    """Reassembles slice predictions into volumes and scores them per patient.

    Feed it batches in any order, across any number of calls; a case is scored as soon as all its
    ``depth`` slices have arrived, and its slices are then freed (memory holds only the cases in
    flight). At :meth:`compute`, cases still incomplete (e.g. ``limit_val_batches``, or one
    process of several) are scored on the slices received, stacked in z order, with a warning;
    their ``per_case`` entry has ``complete: False`` and ``num_incomplete`` counts them.

    Args:
        num_classes: 2 scores ``liver`` only, 3 also ``tumor``; None decides at compute time
            (``tumor`` when a label 2 was seen in a prediction or target).
        lcc_variants: Post-processing variants to score: False raw, True with
            :func:`postprocess_liver` (largest 3D liver component). Drop True to save time.
        hd95: Whether to compute HD95 (the slow part: two distance transforms over the bounding
            box of the two surfaces per structure and case); False reports NaN.

    Not a torchmetrics ``Metric``: with several processes, gather the inputs or the per-case
    results yourself.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        lcc_variants: Sequence[bool] = (False, True),
        hd95: bool = True,
    ):
        if num_classes not in (None, 2, 3):
            raise ValueError(f"num_classes must be 2, 3 or None, got {num_classes}.")
        self.num_classes = num_classes
        self.lcc_variants = tuple(bool(v) for v in lcc_variants)
        self.with_hd95 = hd95
        self.reset()

    def reset(self) -> None:
        """Forgets everything received and scored."""
        self._pending: dict[str, dict[str, Any]] = {}
        self._scores: dict[bool, dict[str, dict[str, Any]]] = {v: {} for v in self.lcc_variants}
        self._saw_tumor = False
        self.per_case: dict[str, dict[str, Any]] = {}

    def update(
        self,
        case_ids: Sequence[str],
        zs: Sequence[int] | Any,
        depths: Sequence[int] | Any,
        spacings: Any,
        preds: Any,
        targets: Any,
    ) -> None:
        """Adds a batch of slices.

        Args:
            case_ids: ``B`` case ids.
            zs: ``B`` slice indices (list, array or tensor).
            depths: ``B`` slice counts of the cases.
            spacings: ``(z, y, x)`` mm per item (see :func:`_spacing_rows` for accepted forms).
            preds: ``(B, H, W)`` integer labels (tensor or array).
            targets: ``(B, H, W)`` integer labels.
        """
        preds, targets = _to_numpy(preds), _to_numpy(targets)
        if preds.shape != targets.shape or preds.ndim != 3:
            raise ValueError(
                f"preds and targets must both be (B, H, W); got {preds.shape} and {targets.shape}."
            )
        n = preds.shape[0]
        zs = _to_numpy(zs).reshape(-1).astype(np.int64)
        depths = _to_numpy(depths).reshape(-1).astype(np.int64)
        case_ids = list(case_ids)
        if not (len(case_ids) == len(zs) == len(depths) == n):
            raise ValueError(
                f"Batch of {n} slices with {len(case_ids)} case ids, {len(zs)} zs, "
                f"{len(depths)} depths."
            )
        rows = _spacing_rows(spacings, n)
        if preds.size and (preds.max() >= 2 or targets.max() >= 2):
            self._saw_tumor = True
        for i in range(n):
            cid, z, depth = str(case_ids[i]), int(zs[i]), int(depths[i])
            if any(cid in s for s in self._scores.values()):
                continue  # already complete and scored (e.g. a padded duplicate)
            entry = self._pending.setdefault(
                cid, {"depth": depth, "spacing": rows[i], "slices": {}, "shape": preds.shape[1:]}
            )
            if entry["shape"] != preds.shape[1:]:
                raise ValueError(
                    f"Case {cid}: slice {z} is {preds.shape[1:]} but earlier slices were "
                    f"{entry['shape']}."
                )
            if not 0 <= z < depth:
                raise ValueError(f"Case {cid}: slice index {z} outside 0..{depth - 1}.")
            entry["slices"][z] = (preds[i].astype(np.uint8), targets[i].astype(np.uint8))
            if len(entry["slices"]) == depth:
                del self._pending[cid]
                for lcc, res in self._score(entry, complete=True).items():
                    self._scores[lcc][cid] = res

    def _score(self, entry: dict[str, Any], complete: bool) -> dict[bool, dict[str, Any]]:
        """Per-variant scores of one (re)assembled case."""
        out = {}
        order = sorted(entry["slices"])
        pred = np.stack([entry["slices"][z][0] for z in order])
        gt = np.stack([entry["slices"][z][1] for z in order])
        for lcc in self.lcc_variants:
            p = postprocess_liver(pred) if lcc else pred
            res: dict[str, Any] = {
                "complete": complete,
                "slices": len(order),
                "depth": entry["depth"],
            }
            for name, select in STRUCTURES.items():
                ps, gs = select(p), select(gt)
                inter, n_p, n_g = int((ps & gs).sum()), int(ps.sum()), int(gs.sum())
                res[name] = {
                    "dice": dice(ps, gs),
                    "hd95": hd95(ps, gs, entry["spacing"]) if self.with_hd95 else math.nan,
                    "inter": inter,
                    "pred_voxels": n_p,
                    "gt_voxels": n_g,
                }
            out[lcc] = res
        return out

    def compute(self, postprocess_lcc: bool = False) -> dict[str, Any]:
        """Scores over the cases received.

        Args:
            postprocess_lcc: Score the predictions after keeping the largest liver component.

        Returns:
            ``{"liver/dice_per_case", "liver/dice_global", "liver/hd95", ["tumor/..."],
            "num_cases", "num_incomplete"}`` as floats, plus ``"per_case"``: ``{case_id:
            {"complete", "slices", "depth", "liver": {"dice", "hd95", ...}, ...}}`` (pop it
            before logging the dict). The same per-case table is kept in ``self.per_case``.
        """
        if postprocess_lcc not in self._scores:
            raise ValueError(
                f"postprocess_lcc={postprocess_lcc} was not tracked; construct the evaluator "
                f"with lcc_variants including {postprocess_lcc}."
            )
        table = dict(self._scores[postprocess_lcc])
        if self._pending:
            names = sorted(self._pending)
            warnings.warn(
                f"VolumeEvaluator: {len(names)} case(s) incomplete ({', '.join(names[:5])}"
                f"{'...' if len(names) > 5 else ''}): scored on the slices received only.",
                stacklevel=2,
            )
            for cid in names:
                table[cid] = self._score(self._pending[cid], complete=False)[postprocess_lcc]
        tumor = self.num_classes == 3 or (self.num_classes is None and self._saw_tumor)
        out: dict[str, Any] = {}
        for name in ("liver", "tumor") if tumor else ("liver",):
            rows = [r[name] for r in table.values()]
            if not rows:
                out |= {
                    f"{name}/dice_per_case": math.nan,
                    f"{name}/dice_global": math.nan,
                    f"{name}/hd95": math.nan,
                }
                continue
            inter = sum(r["inter"] for r in rows)
            denom = sum(r["pred_voxels"] + r["gt_voxels"] for r in rows)
            hds = np.array([r["hd95"] for r in rows], np.float64)
            out[f"{name}/dice_per_case"] = float(np.mean([r["dice"] for r in rows]))
            out[f"{name}/dice_global"] = 2.0 * inter / denom if denom else 1.0
            out[f"{name}/hd95"] = float(np.nanmean(hds)) if np.isfinite(hds).any() else math.nan
        out["num_cases"] = float(len(table))
        out["num_incomplete"] = float(sum(not r["complete"] for r in table.values()))
        per_case = {cid: dict(table[cid]) for cid in sorted(table)}
        if not tumor:
            for r in per_case.values():
                r.pop("tumor", None)
        self.per_case = per_case
        out["per_case"] = per_case
        return out
