"""The LiTS structures in the volume evaluator, counted by hand: ``liver`` is every voxel with
label >= 1 (tumour included), ``tumor`` is label 2."""

from __future__ import annotations

import numpy as np
import pytest

from seglab.metrics.volume_evaluator import VolumeEvaluator


def test_liver_includes_the_tumour_and_tumour_is_scored_apart():
    gt = np.zeros((4, 12, 12), np.uint8)
    gt[:, 2:10, 2:10] = 1
    gt[1:3, 4:7, 4:7] = 2  # an 18-voxel tumour inside the 256-voxel liver
    pred = gt.copy()
    pred[pred == 2] = 1  # the tumour labelled liver: a perfect liver, a missed tumour
    pred[0, 0, 0] = 2  # one false tumour voxel outside (also liver: label >= 1)
    ev = VolumeEvaluator(3, (False,))
    order = [2, 0, 3, 1]  # slices arrive in any order
    ev.update(["a"] * 4, order, [4] * 4, [(2.0, 1.0, 1.0)] * 4, pred[order], gt[order])
    res = ev.compute()
    liver_p, liver_g = pred >= 1, gt >= 1
    liver = 2 * (liver_p & liver_g).sum() / (liver_p.sum() + liver_g.sum())
    assert liver == pytest.approx(2 * 256 / (257 + 256))
    assert res["liver/dice_per_case"] == pytest.approx(liver)
    assert res["tumor/dice_per_case"] == pytest.approx(0.0)  # 0 of 18 found, 1 false voxel
    assert res["per_case"]["a"]["tumor"]["gt_voxels"] == 18
    assert res["per_case"]["a"]["tumor"]["pred_voxels"] == 1
    assert res["per_case"]["a"]["liver"]["inter"] == 256
