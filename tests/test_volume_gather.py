"""Volumetric scores under DDP: two real gloo processes, each fed the slices its
DistributedSampler deals it from a CT phantom, agree with whole-volume scores computed here.

No mocking: the slices go through the real ``ct_slices`` dataset and the default collate, and
``VolumeScores.compute`` exchanges them with ``all_gather_object`` over gloo.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from seglab.data.ct.phantom import generate_phantom
from seglab.data.datasets.base import get_dataset_class
from seglab.metrics.volume import hd95
from seglab.tasks.volumetric import VolumeScores

WORLD = 2
SHAPE = (9, 32, 32)  # 3 cases x 9 slices = 27: the sampler pads one duplicate slice
SPACING = (5.0, 2.8, 2.8)


def fake_prediction(mask: torch.Tensor, z: int) -> torch.Tensor:
    """A deterministic, imperfect prediction of one slice: the left 6 columns missed, and a
    separate false-positive square on every third slice (removed by the LCC variant)."""
    pred = mask.clone()
    pred[:, :6] = 0
    if z % 3 == 0:
        pred[:3, -3:] = 1
    return pred


def dataset(root: Path, cache: Path):
    return get_dataset_class("ct_slices")(
        str(root), split="all", labels="liver", cache_dir=str(cache)
    )


def _rank(rank: int, root: str, cache: str, store: str, out: str) -> None:
    from torch.utils.data import DataLoader, DistributedSampler

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD,
        timeout=timedelta(seconds=60),
    )  # fmt: skip
    try:
        ds = dataset(Path(root), Path(cache))
        sampler = DistributedSampler(ds, WORLD, rank, shuffle=True, seed=0)
        scores = VolumeScores(2, lcc=True)
        seen = 0
        for batch in DataLoader(ds, batch_size=4, sampler=sampler):
            zs = batch["meta"]["z"].tolist()
            preds = torch.stack([fake_prediction(m, z) for m, z in zip(batch["mask"], zs)])
            scores.update("val", preds, batch)
            seen += len(zs)
        result = scores.compute("val")
        Path(out, f"rank{rank}.json").write_text(
            json.dumps({"seen": seen, "scores": result, "per_case": scores.per_case})
        )
    finally:
        dist.destroy_process_group()


def whole_volume_scores(ds) -> dict[str, dict[str, float]]:
    """Per case: Dice counted by hand and HD95 on the reassembled volumes."""
    volumes: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    for i in range(len(ds)):
        item = ds[i]
        cid, z = item["meta"]["case_id"], int(item["meta"]["z"])
        gt = item["mask"].numpy()
        volumes.setdefault(cid, {})[z] = (fake_prediction(item["mask"], z).numpy(), gt)
    out = {}
    for cid, slices in volumes.items():
        pred = np.stack([slices[z][0] for z in sorted(slices)]) >= 1
        gt = np.stack([slices[z][1] for z in sorted(slices)]) >= 1
        d = 2 * (pred & gt).sum() / (pred.sum() + gt.sum())
        out[cid] = {"dice": float(d), "hd95": hd95(pred, gt, SPACING), "pred": pred, "gt": gt}
    return out


@pytest.mark.timeout(240)
def test_two_gloo_ranks_score_whole_volumes(tmp_path):
    root = generate_phantom(tmp_path / "ct", n_cases=3, shape=SHAPE, spacing=SPACING, seed=1)
    ds = dataset(root, tmp_path / "cache")  # fills the cache before the ranks start
    assert len(ds) == 27
    expected = whole_volume_scores(ds)
    assert all(0.3 < e["dice"] < 0.999 for e in expected.values())  # imperfect, not empty
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args = (str(root), str(tmp_path / "cache"), str(tmp_path / "store"), str(tmp_path))
    # fork: the ranks inherit the imported modules instead of importing Lightning again
    mp.start_processes(_rank, args=args, nprocs=WORLD, join=True, start_method="fork")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert [r["seen"] for r in results] == [14, 14]  # each rank held only part of every case
    inter = sum(int((e["pred"] & e["gt"]).sum()) for e in expected.values())
    total = sum(int(e["pred"].sum() + e["gt"].sum()) for e in expected.values())
    for res in results:  # every rank reports the same, whole-volume scores
        s = res["scores"]
        assert s["num_cases"] == 3 and s["num_incomplete"] == 0
        mean = np.mean([e["dice"] for e in expected.values()])
        assert s["liver/dice_per_case"] == pytest.approx(mean, rel=1e-9)
        assert s["liver/dice_global"] == pytest.approx(2 * inter / total, rel=1e-9)
        assert s["liver/hd95"] == pytest.approx(np.mean([e["hd95"] for e in expected.values()]))
        assert s["lcc/liver/dice_per_case"] > s["liver/dice_per_case"]  # the squares removed
        for cid, e in expected.items():
            assert res["per_case"]["liver/dice"][cid] == pytest.approx(e["dice"], rel=1e-9)
            assert res["per_case"]["liver/hd95"][cid] == pytest.approx(e["hd95"], rel=1e-9)
