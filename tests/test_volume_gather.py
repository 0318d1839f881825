"""Volumetric scores under DDP: slices dealt to two ranks are merged into whole volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch.distributed as dist

from seglab.metrics.volume_evaluator import VolumeEvaluator
from seglab.tasks.volumetric import VolumeScores


def test_two_ranks_halves_give_the_single_process_scores(monkeypatch):
    rng = np.random.default_rng(0)
    gt = (rng.random((6, 16, 16)) > 0.5).astype(np.uint8)
    pred = gt.copy()
    pred[:, :4] = 0
    single = VolumeEvaluator(2, (False,))
    single.update(["a"] * 6, range(6), [6] * 6, [(1.0, 1.0, 1.0)] * 6, pred, gt)
    expected = single.compute()["liver/dice_per_case"]

    ranks = [VolumeEvaluator(2, (False,)) for _ in range(2)]
    for r, ev in enumerate(ranks):  # DistributedSampler: rank r gets slices r, r+2, r+4
        zs = list(range(r, 6, 2))
        ev.update(["a"] * 3, zs, [6] * 3, [(1.0, 1.0, 1.0)] * 3, pred[zs], gt[zs])
    states = [(ev._pending, ev._scores, ev._saw_tumor) for ev in ranks]
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(
        dist, "all_gather_object", lambda out, obj: out.__setitem__(slice(None), states)
    )
    VolumeScores.gather(ranks[0])
    res = ranks[0].compute()
    assert res["num_incomplete"] == 0
    assert res["liver/dice_per_case"] == pytest.approx(expected)
