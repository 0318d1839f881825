"""End to end: a short fit learns, the run folder is complete, resume and reload are exact."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from seglab.cli import run_cli
from seglab.data.datamodule import SegDataModule
from seglab.tasks import SegmentationTask
from tests.conftest import tiny_args

TINY = tiny_args()


def fit(tmp_path: Path, *extra: str, epochs: int = 2):
    args = ["fit", "--config", "experiments/default.yaml", f"--run.root={tmp_path / 'runs'}", *TINY]
    return run_cli([*args, f"--trainer.max_epochs={epochs}", *extra])


def test_short_fit_lowers_the_loss():
    torch.manual_seed(0)
    dm = SegDataModule(
        "synthetic", dataset_kwargs={"size": 32, "num_samples": 32}, batch_size=8, num_workers=0
    )
    dm.setup("fit")
    task = SegmentationTask(
        "unet",
        5,
        model_kwargs={"base_channels": 8, "depth": 3},
        loss={"ce": 1.0},
        lr=0.01,
        scheduler="constant",
    )
    batch = next(iter(dm.train_dataloader()))
    opt = torch.optim.Adam(task.parameters(), lr=0.01)
    task.train()
    first = task.criterion(task(batch["image"]), batch["mask"])[0].item()
    for _ in range(30):
        opt.zero_grad()
        loss = task.criterion(task(batch["image"]), batch["mask"])[0]
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_run_folder_is_complete(tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    cli = fit(tmp_path)
    run = cli.run_dir
    assert run.parent == tmp_path / "runs" / "default"
    for name in ("config.yaml", "metrics.csv", "summary.json", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    assert list((run / "checkpoints").glob("best-*.ckpt"))
    assert len(list((run / "predictions").glob("*.png"))) == 4
    summary = json.loads((run / "summary.json").read_text())
    for key in ("val/mIoU", "val/pixel_acc", "val/mean_acc", "val/dice"):
        assert key in summary["final"] and key in summary["best"]
    assert summary["epochs"] == 2 and summary["params"] > 0 and summary["wall_seconds"] > 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["init_args"]["model"] == "unet"


def test_resume_continues_where_it_stopped(tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    first = fit(tmp_path, epochs=1)
    ckpt = torch.load(first.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 0
    with (first.run_dir / "metrics.csv").open() as f:
        rows_before = list(csv.DictReader(f))
    second = fit(tmp_path, "--ckpt_path=last", epochs=2)
    assert second.run_dir == first.run_dir  # the same run folder continues
    with (first.run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows[: len(rows_before)] == rows_before  # nothing logged before the resume is lost
    assert {r["epoch"] for r in rows if r.get("val/mIoU")} == {"0", "1"}
    trainer = second.trainer
    assert trainer.current_epoch == 2 and trainer.global_step == 2 * ckpt["global_step"]
    assert second.trainer.checkpoint_callback.best_model_score is not None
    summary = json.loads((first.run_dir / "summary.json").read_text())
    assert summary["epochs"] == 2
    # The same learning-rate schedule and optimiser step count as an uninterrupted run.
    straight = fit(tmp_path / "straight", epochs=2)
    a = torch.load(first.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(straight.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"]
    lr_a = a["optimizer_states"][0]["param_groups"][0]["lr"]
    assert lr_a == pytest.approx(b["optimizer_states"][0]["param_groups"][0]["lr"])
    steps = [s["step"] for s in a["optimizer_states"][0]["state"].values()]
    assert all(float(s) == 2 * ckpt["global_step"] for s in steps)  # Adam moments continued


def test_checkpoint_alone_rebuilds_model_and_metrics(tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    cli = fit(tmp_path, epochs=1)
    ckpt = cli.run_dir / "checkpoints" / "last.ckpt"
    task = SegmentationTask.load_from_checkpoint(ckpt, weights_only=True)
    reference = cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    again = cli.trainer.validate(task, datamodule=cli.datamodule, verbose=False)[0]
    assert again["val/mIoU"] == pytest.approx(reference["val/mIoU"])


def test_multiclass_with_one_class_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    with pytest.raises(ValueError, match="task: binary"):
        fit(tmp_path, "--model.init_args.num_classes=1")
