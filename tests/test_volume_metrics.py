"""Volumetric metrics: Dice, HD95 in mm, largest component, the per-patient evaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seglab.metrics.volume import dice, hd95, largest_component, postprocess_liver
from seglab.metrics.volume_evaluator import VolumeEvaluator


def test_dice_values():
    empty = np.zeros((3, 4, 4), bool)
    assert dice(empty, empty) == 1.0
    a, b = empty.copy(), empty.copy()
    a[0, :2, :2] = True  # 4 voxels
    b[0, :1, :2] = True  # 2 voxels, both inside a
    assert dice(a, b) == pytest.approx(2 * 2 / 6)
    assert dice(a, empty) == 0.0
    with pytest.raises(ValueError, match="Shapes differ"):
        dice(a, b[0])


def test_hd95_single_voxels_anisotropic():
    sp = (2.5, 0.8, 0.6)
    p, g = np.zeros((6, 6, 6), bool), np.zeros((6, 6, 6), bool)
    p[1, 1, 1] = True
    g[3, 1, 1] = True
    assert hd95(p, g, sp) == pytest.approx(2 * 2.5)
    g[:] = False
    g[2, 1, 5] = True  # offset (1, 0, 4) voxels
    assert hd95(p, g, sp) == pytest.approx(math.hypot(2.5, 4 * 0.6))


def _surface_points(mask):
    from scipy import ndimage

    return np.argwhere(mask & ~ndimage.binary_erosion(mask))


def test_hd95_cubes_against_brute_force():
    sp = np.array([2.0, 0.7, 0.5])
    p, g = np.zeros((12, 14, 16), bool), np.zeros((12, 14, 16), bool)
    g[2:7, 3:9, 4:12] = True
    p[4:9, 3:9, 6:14] = True  # the same box moved by (2, 0, 2) voxels
    sp_pts, sg_pts = _surface_points(p) * sp, _surface_points(g) * sp
    dist = np.sqrt(((sp_pts[:, None, :] - sg_pts[None, :, :]) ** 2).sum(-1))
    expected = np.percentile(np.concatenate([dist.min(1), dist.min(0)]), 95)
    assert hd95(p, g, sp) == pytest.approx(expected)
    assert 0 < expected <= math.hypot(2 * 2.0, 2 * 0.5) + 1e-9
    assert hd95(g, g, sp) == 0.0


def test_hd95_empty_rules():
    empty, one = np.zeros((3, 3, 3), bool), np.zeros((3, 3, 3), bool)
    one[1, 1, 1] = True
    assert hd95(empty, empty, (1, 1, 1)) == 0.0
    assert math.isnan(hd95(one, empty, (1, 1, 1)))
    assert math.isnan(hd95(empty, one, (1, 1, 1)))


def test_largest_component():
    m = np.zeros((5, 8, 8), bool)
    m[0:2, 0:2, 0:2] = True  # 8 voxels
    m[4, 7, 7] = True  # 1 voxel
    m[2, 2, 2] = True  # touches the big one by a corner only
    out = largest_component(m)
    assert out.sum() == 9 and not out[4, 7, 7]
    assert largest_component(m, connectivity=1).sum() == 8
    assert not largest_component(np.zeros((2, 2, 2), bool)).any()
    lab = np.zeros((5, 8, 8), np.uint8)
    lab[m] = 1
    lab[0, 0, 0] = lab[4, 7, 7] = 2
    post = postprocess_liver(lab)
    assert post[0, 0, 0] == 2 and post[4, 7, 7] == 0 and (post >= 1).sum() == 9


def _volumes():
    """Two 1-slice-thick cases spread over 3 slices each: (case_id, pred, gt, spacing)."""
    a_gt, a_pred = np.zeros((3, 4, 5), np.int64), np.zeros((3, 4, 5), np.int64)
    a_gt[1, 0:2, 0:5] = 1  # 10 voxels
    a_pred[1, 1:3, 0:5] = 1  # 10 voxels, 5 shared: Dice 0.5
    b_gt, b_pred = np.zeros((3, 4, 5), np.int64), np.zeros((3, 4, 5), np.int64)
    b_gt[2, 0, 0:2] = 1  # 2 voxels, nothing predicted: Dice 0
    return [("A", a_pred, a_gt, (2.0, 1.0, 1.0)), ("B", b_pred, b_gt, (3.0, 0.5, 0.5))]


def test_evaluator_global_vs_per_case_any_order():
    slices = [(cid, z, p[z], g[z], sp) for cid, p, g, sp in _volumes() for z in range(3)]
    order = np.random.default_rng(0).permutation(len(slices))
    ev = VolumeEvaluator()
    for chunk in np.array_split(order, 3):  # batches mixing the two cases, shuffled
        items = [slices[i] for i in chunk]
        ev.update(
            [s[0] for s in items],
            torch.tensor([s[1] for s in items]),
            torch.tensor([3] * len(items)),
            [torch.tensor([s[4][k] for s in items]) for k in range(3)],  # default_collate form
            torch.from_numpy(np.stack([s[2] for s in items])),
            np.stack([s[3] for s in items]),
        )
    res = ev.compute()
    assert res["liver/dice_per_case"] == pytest.approx((0.5 + 0.0) / 2)
    assert res["liver/dice_global"] == pytest.approx(2 * 5 / (10 + 10 + 2))
    assert res["per_case"]["A"]["liver"]["dice"] == pytest.approx(0.5)
    assert math.isnan(res["per_case"]["B"]["liver"]["hd95"])
    assert res["liver/hd95"] == pytest.approx(res["per_case"]["A"]["liver"]["hd95"])  # NaN left out
    assert res["per_case"]["A"]["liver"]["hd95"] == pytest.approx(1.0)  # rows shifted by 1 mm
    assert "tumor/dice_per_case" not in res and res["num_cases"] == 2.0
    assert ev.per_case is res["per_case"]
    ev.reset()
    assert ev.compute()["num_cases"] == 0.0


def test_evaluator_tumor_lcc_and_incomplete():
    gt = np.zeros((4, 10, 10), np.int64)
    gt[1:3, 2:6, 2:6] = 1
    gt[1:3, 3:5, 3:5] = 2
    pred = gt.copy()
    pred[3, 8:10, 8:10] = 1  # a far false-positive island
    ev = VolumeEvaluator(num_classes=3)
    ev.update(
        ["c"] * 4,
        [3, 1, 0, 2],
        [4] * 4,
        [(1.0, 1.0, 1.0)] * 4,
        pred[[3, 1, 0, 2]],
        gt[[3, 1, 0, 2]],
    )
    raw, post = ev.compute(), ev.compute(postprocess_lcc=True)
    assert raw["tumor/dice_per_case"] == 1.0 and raw["liver/dice_per_case"] < 1.0
    assert post["liver/dice_per_case"] == 1.0 and post["liver/hd95"] == 0.0
    ev = VolumeEvaluator(lcc_variants=(False,))
    ev.update(["c", "c"], [0, 1], [4, 4], np.ones((2, 3)), pred[:2], gt[:2])
    with pytest.warns(UserWarning, match="incomplete"):
        res = ev.compute()
    assert res["num_incomplete"] == 1.0 and res["per_case"]["c"]["complete"] is False
    with pytest.raises(ValueError, match="not tracked"):
        ev.compute(postprocess_lcc=True)
