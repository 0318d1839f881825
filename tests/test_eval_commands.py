"""``seglab validate`` and ``seglab test`` (no DDP) and the volumetric validation, end to end.

The logged scores are compared with values computed here from the checkpoint: a forward pass
of the loaded model over the same loader, a confusion matrix counted with numpy, and for CT the
Dice of each reassembled volume counted by hand.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from seglab.cli import run_cli
from seglab.data.ct.phantom import generate_phantom
from seglab.tasks import SegmentationTask
from tests.conftest import tiny_args

REPO = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def numpy_scores(task: SegmentationTask, loader, classes: int) -> dict[str, float]:
    """mIoU (classes present in truth or prediction) and pixel accuracy, counted with numpy."""
    cm = np.zeros((classes, classes), np.int64)
    task.eval()
    with torch.no_grad():
        for batch in loader:
            pred = task(batch["image"]).argmax(1).numpy().ravel()
            true = batch["mask"].numpy().ravel()
            np.add.at(cm, (true, pred), 1)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    present = union > 0
    return {"mIoU": float((tp[present] / union[present]).mean()), "acc": tp.sum() / cm.sum()}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval") / "runs"
    os.environ.pop("SEGLAB_RUN_DIR", None)
    cfg = str(REPO / "experiments" / "default.yaml")
    fit = run_cli(
        [
            "fit",
            "--config",
            cfg,
            f"--run.root={root}",
            *tiny_args(8),
            "--trainer.max_epochs=1",
            "--run.num_overlays=0",
        ]  # fmt: skip
    )
    os.environ.pop("SEGLAB_RUN_DIR", None)
    return fit.run_dir / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("stage", ["validate", "test"])
def test_validate_and_test_log_the_checkpoints_scores(stage, checkpoint, tmp_path):
    cfg = str(REPO / "experiments" / "default.yaml")
    extra = ["--data.test_split=test"] if stage == "test" else []
    cli = run_cli(
        [
            stage,
            "--config",
            cfg,
            f"--run.root={tmp_path}",
            f"--ckpt_path={checkpoint}",
            *tiny_args(8),
            *extra,
        ]  # fmt: skip
    )
    prefix = "val" if stage == "validate" else "test"
    logged = cli.trainer.callback_metrics
    task = SegmentationTask.load_from_checkpoint(checkpoint)
    loader = getattr(cli.datamodule, f"{prefix}_dataloader")()
    ref = numpy_scores(task, loader, 5)
    assert float(logged[f"{prefix}/mIoU"]) == pytest.approx(ref["mIoU"], rel=1e-5)
    assert float(logged[f"{prefix}/pixel_acc"]) == pytest.approx(ref["acc"], rel=1e-5)
    if stage == "test":  # the test split, not the validation images
        names = {n for b in cli.datamodule.test_dataloader() for n in b["meta"]["name"]}
        assert names and all(n.startswith("test_") for n in names)


def test_volumetric_validation_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGLAB_CACHE", str(tmp_path / "cache"))
    root = generate_phantom(tmp_path / "ct", n_cases=4, shape=(8, 32, 32), seed=3)
    cli = run_cli(
        [
            "fit", "--config", str(REPO / "experiments" / "unet_liver.yaml"),
            f"--run.root={tmp_path / 'runs'}", f"--data.root={root}",
            "--data.dataset_kwargs.slice_size=32", "--data.dataset_kwargs.val_fraction=0.5",
            "--model.init_args.model_kwargs.base_channels=4",
            "--model.init_args.channels_last=false",
            "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
            "--trainer.num_sanity_val_steps=0", "--data.num_workers=0", "--data.batch_size=4",
            "--run.num_overlays=0", *QUIET,
        ]
    )  # fmt: skip
    run = cli.run_dir
    summary = json.loads((run / "summary.json").read_text())
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    val = [r for r in rows if r.get("val/liver/dice_per_case")]
    assert len(val) == 1
    for key in ("val/liver/dice_global", "val/liver/hd95", "val/lcc/liver/dice_per_case"):
        assert val[0].get(key), key
    # the per-case Dice of each reassembled validation volume, counted here
    ds = cli.datamodule.datasets["val"]
    task = SegmentationTask.load_from_checkpoint(run / "checkpoints" / "last.ckpt").eval()
    volumes: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            pred = (task(item["image"][None])[0, 0] > 0).numpy()
            volumes.setdefault(item["meta"]["case_id"], {})[int(item["meta"]["z"])] = (
                pred,
                item["mask"].numpy() >= 1,
            )
    expected = {}
    for cid, slices in volumes.items():
        assert sorted(slices) == list(range(8))  # every slice of the case was validated
        p = np.stack([slices[z][0] for z in range(8)])
        g = np.stack([slices[z][1] for z in range(8)])
        denom = p.sum() + g.sum()
        expected[cid] = 1.0 if denom == 0 else 2 * (p & g).sum() / denom
    assert len(expected) == 2
    per_case = summary["per_case"]["liver/dice"]
    assert per_case == pytest.approx(expected, rel=1e-6)
    mean = float(np.mean(list(expected.values())))
    assert summary["final"]["val/liver/dice_per_case"] == pytest.approx(mean, rel=1e-5)
    assert float(val[0]["val/liver/dice_per_case"]) == pytest.approx(mean, rel=1e-5)
    assert set(summary["per_case"]["liver/hd95"]) == set(expected)
