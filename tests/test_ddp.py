"""DDP on CPU (gloo, two processes): the same validation metrics as one process.

Lightning's DDP launcher re-runs the command line once per extra process, so the two-process
runs are real subprocesses (``python -m seglab ...``). The validation set (16 images, batch 4)
divides evenly by processes x batch, so the DistributedSampler adds no padded duplicates and the
summed confusion matrix must equal the single-process one exactly.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seglab.cli import run_cli
from seglab.runs.checkpoint import load_checkpoint_file
from tests.conftest import tiny_args

REPO = Path(__file__).resolve().parents[1]
TINY = tiny_args()
FIT = [
    "--trainer.max_epochs=3",
    "--model.init_args.lr=0.02",
    "--model.init_args.scheduler=constant",
]
KEYS = ("val/mIoU", "val/pixel_acc", "val/mean_acc", "val/dice", "val/loss")

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with the gloo backend is not available",
)


def run_seglab(args: list[str], root: Path) -> Path:
    """Runs ``python -m seglab`` in a fresh process; returns the folder it wrote metrics to
    (a training run's folder, or the per-invocation folder of a validate inside it)."""
    env = {k: v for k, v in os.environ.items() if k != "SEGLAB_RUN_DIR"}
    env |= {"OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    before = set(root.rglob("metrics.csv")) if root.exists() else set()
    proc = subprocess.run(
        [sys.executable, "-m", "seglab", *args, f"--run.root={root}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (metrics,) = set(root.rglob("metrics.csv")) - before
    return metrics.parent


def val_metrics(run: Path) -> dict[int, dict[str, float]]:
    """``{epoch: {"val/...": value}}`` from the run's ``metrics.csv``."""
    out: dict[int, dict[str, float]] = {}
    with open(run / "metrics.csv") as f:
        for row in csv.DictReader(f):
            vals = {k: float(v) for k, v in row.items() if k.startswith("val/") and v}
            if vals:
                out.setdefault(int(row["epoch"]), {}).update(vals)
    return out


@pytest.mark.slow
def test_two_processes_validate_like_one(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    torch.set_num_threads(1)
    root = tmp_path / "runs"
    base = ["--config", "experiments/default.yaml"]
    ddp = ["--config", "experiments/trainer/ddp_cpu.yaml"]
    # A two-process fit through the trainer preset (a config fragment after the experiment).
    fit_run = run_seglab(["fit", *base, *ddp, *TINY, *FIT, "--run.experiment=ddp_fit"], root)
    ckpt = fit_run / "checkpoints" / "last.ckpt"
    # Lightning 2.6 rewrites last.ckpt only when the monitored metric improves, so compare with
    # the validation of the epoch the checkpoint holds.
    fit_vals = val_metrics(fit_run)[load_checkpoint_file(ckpt)["epoch"]]
    # Validate the same checkpoint with two processes, then in this process with one.
    (val2,) = val_metrics(
        run_seglab(
            ["validate", *base, *ddp, *TINY, f"--ckpt_path={ckpt}", "--run.experiment=v2"], root
        )
    ).values()
    cli = run_cli(
        [
            "validate",
            *base,
            *TINY,
            "--trainer.accelerator=cpu",
            "--trainer.devices=1",
            f"--ckpt_path={ckpt}",
            f"--run.root={root}",
            "--run.experiment=v1",
        ]
    )
    (val1,) = val_metrics(cli.run_dir).values()
    assert 0.0 < val1["val/pixel_acc"] < 1.0
    for key in KEYS:  # counts are exact; val/loss is a mean of per-process means (float noise)
        assert val2[key] == pytest.approx(val1[key], rel=1e-5, abs=1e-6), key
        assert fit_vals[key] == pytest.approx(val1[key], rel=1e-5, abs=1e-6), key
    per_class = [k for k in val1 if k.startswith("val/IoU/")]
    assert per_class and all(val2[k] == pytest.approx(val1[k], abs=1e-6) for k in per_class)
