"""Volumetric CT scores: Dice, HD95 (mm), largest-component post-processing.

Per-patient evaluation of slice predictions: :mod:`seglab.metrics.volume_evaluator`.

Conventions (LiTS):

- Structures: ``liver`` is ``label >= 1`` (liver including tumour), ``tumor`` is ``label == 2``.
- Dice with both prediction and ground truth empty is 1.0 (nothing to find, nothing found).
- HD95 is the 95th percentile of the pooled symmetric surface distances in mm. Both empty: 0.0;
  exactly one empty: NaN (undefined), and NaN cases are left out of the mean over patients
  (``nanmean``; NaN when no case has a value).
- ``dice_per_case`` is the mean of the per-patient Dice; ``dice_global`` pools the voxels of all
  patients (one Dice of the summed intersections and volumes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

STRUCTURES = {"liver": lambda v: v >= 1, "tumor": lambda v: v == 2}


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice of two boolean arrays; 1.0 when both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"Shapes differ: prediction {pred.shape}, ground truth {gt.shape}.")
    denom = int(pred.sum()) + int(gt.sum())
    if denom == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, gt).sum()) / denom


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of the mask that touch the background (face connectivity); edges count as border."""
    return mask ^ ndimage.binary_erosion(
        mask, structure=ndimage.generate_binary_structure(mask.ndim, 1)
    )


def surface_distances(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``pred`` to ``gt``'s surface, and back.

    Both masks must be non-empty. Computed on the bounding box of the two surfaces, which gives
    the same distances as the full volume (every nearest surface voxel lies inside it).
    """
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    sp, sg = _surface(pred), _surface(gt)
    coords = np.argwhere(sp | sg)
    lo, hi = coords.min(0), coords.max(0) + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sp, sg = sp[box], sg[box]
    sampling = [float(s) for s in spacing]
    d_to_gt = ndimage.distance_transform_edt(~sg, sampling=sampling)
    d_to_pred = ndimage.distance_transform_edt(~sp, sampling=sampling)
    return d_to_gt[sp], d_to_pred[sg]


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]) -> float:
    """95th percentile Hausdorff distance in mm (pooled symmetric surface distances).

    Args:
        pred: Boolean prediction, 2D or 3D.
        gt: Boolean ground truth, same shape.
        spacing: Voxel size per axis in mm (``(z, y, x)`` for the CT volumes).

    Returns:
        The distance; 0.0 when both masks are empty, NaN when exactly one is.
    """
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"Shapes differ: prediction {pred.shape}, ground truth {gt.shape}.")
    if len(spacing) != pred.ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not match {pred.ndim} dimensions.")
    has_p, has_g = bool(pred.any()), bool(gt.any())
    if not has_p and not has_g:
        return 0.0
    if has_p != has_g:
        return math.nan
    a, b = surface_distances(pred, gt, spacing)
    return float(np.percentile(np.concatenate([a, b]), 95))


def largest_component(mask: np.ndarray, connectivity: int | None = None) -> np.ndarray:
    """Keeps the largest connected component of a boolean mask (empty stays empty).

    Args:
        mask: Boolean array (3D for volumes).
        connectivity: Neighbourhood as in ``generate_binary_structure`` (1: faces, ``ndim``: faces,
            edges and corners); default ``ndim`` (26-connectivity in 3D).
    """
    mask = np.asarray(mask, bool)
    structure = ndimage.generate_binary_structure(mask.ndim, connectivity or mask.ndim)
    lab, n = ndimage.label(mask, structure=structure)
    if n <= 1:
        return mask.copy()
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(sizes.argmax())


def postprocess_liver(pred: np.ndarray) -> np.ndarray:
    """Largest liver component; tumour voxels outside it are dropped (labels 0 / 1 / 2)."""
    pred = np.asarray(pred)
    keep = largest_component(pred >= 1)
    return np.where(keep, pred, 0).astype(pred.dtype)
