"""Crash safety and numerical faults: SIGKILL mid-epoch and mid-write, NaN loss, NaN weights,
deterministic resume.

The SIGKILL tests run ``python -m seglab fit`` as a subprocess with tiny settings, slowed down by
test-only callbacks from ``tests/helpers_slow.py``, kill it at a marked moment, then resume
in-process with ``--ckpt_path last`` and check that it finishes and that every checkpoint on disk
loads with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from seglab.cli import run_cli
from seglab.runs.checkpoint import load_checkpoint_file
from tests import helpers_slow
from tests.conftest import tiny_args

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "experiments" / "default.yaml")
TINY = [
    *tiny_args(8),
    "--trainer.num_sanity_val_steps=0",
    "--run.num_overlays=0",
]
STEPS_PER_EPOCH = 2  # 8 samples / batch 4


def fit(root: Path, *extra: str, epochs: int = 2):
    os.environ.pop("SEGLAB_RUN_DIR", None)
    args = ["fit", "--config", CONFIG, f"--run.root={root}", *TINY]
    return run_cli([*args, f"--trainer.max_epochs={epochs}", *extra])


def spawn_fit(root: Path, marker: Path, *extra: str, epochs: int = 3) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "SEGLAB_RUN_DIR"}
    env |= {"SEGLAB_TEST_MARKER": str(marker), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "seglab", "fit", "--config", CONFIG, f"--run.root={root}"]
    cmd += [*TINY, f"--trainer.max_epochs={epochs}", *extra]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def kill_when_marked(proc: subprocess.Popen, marker: Path, timeout: float = 150) -> str:
    """Waits for the marker file, then SIGKILLs the process; returns the marker text."""
    start = time.monotonic()
    while not marker.exists():
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace")[-3000:]
            pytest.fail(f"the training subprocess ended (rc={proc.returncode}) early:\n{out}")
        if time.monotonic() - start > timeout:
            proc.kill()
            pytest.fail("the training subprocess never reached the marked moment")
        time.sleep(0.1)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return marker.read_text()


def the_run(root: Path) -> Path:
    runs = list((root / "default").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def assert_every_checkpoint_loads(run: Path) -> dict[str, dict]:
    loaded = {p.name: load_checkpoint_file(p) for p in (run / "checkpoints").glob("*.ckpt")}
    assert "last.ckpt" in loaded
    for ckpt in loaded.values():
        assert ckpt["state_dict"] and all(
            torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point()
        )
    return loaded


def assert_clean_history(run: Path) -> None:
    """After the resume: each step logged once, no temporary file, one best file, finished."""
    from tests.test_reliability_runs import assert_no_duplicated_step

    assert_no_duplicated_step(run)
    assert not list(run.rglob("*.tmp")) and not (run / "run.lock").exists()
    assert len(list((run / "checkpoints").glob("best-*.ckpt"))) == 1
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_sigkill_mid_epoch_then_resume_finishes(tmp_path):
    root, marker = tmp_path / "runs", tmp_path / "marker"
    proc = spawn_fit(root, marker, "--trainer.callbacks+=tests.helpers_slow.SlowBatches")
    epoch, step = map(int, kill_when_marked(proc, marker).split())
    assert epoch == 1 and step > STEPS_PER_EPOCH  # killed inside the second epoch
    run = the_run(root)
    before = assert_every_checkpoint_loads(run)
    assert before["last.ckpt"]["epoch"] == 0
    cli = fit(root, "--ckpt_path=last", epochs=3)
    assert cli.run_dir == run  # the killed run continues in its own folder
    assert cli.trainer.current_epoch == 3
    assert cli.trainer.global_step == 3 * STEPS_PER_EPOCH
    assert_every_checkpoint_loads(run)
    assert_clean_history(run)


def test_sigkill_during_checkpoint_write_keeps_old_checkpoint(tmp_path):
    root, marker = tmp_path / "runs", tmp_path / "marker"
    # Monitoring the step (mode max) makes every epoch "best", so every epoch writes its best
    # and last files: saves 1 and 2 are epoch 0's; the 3rd (end of epoch 1) is killed half-way.
    cb = "--trainer.callbacks+=tests.helpers_slow.SlowCheckpointWrite"
    proc = spawn_fit(root, marker, cb, "--run.monitor=step", "--run.mode=max")
    text = kill_when_marked(proc, marker)
    assert text.startswith("writing ") and text.endswith(".ckpt")
    run = the_run(root)
    ckpts = run / "checkpoints"
    partial = [p for p in ckpts.iterdir() if p.name.endswith(".tmp")]
    assert len(partial) == 1, "the kill should leave exactly one half-written temporary file"
    with pytest.raises(ValueError, match=r"Cannot load checkpoint .*\.tmp: it is truncated"):
        load_checkpoint_file(partial[0])  # truly half a file ...
    before = assert_every_checkpoint_loads(run)  # ... and no final name holds half a file
    assert before["last.ckpt"]["epoch"] == 0
    cli = fit(root, "--ckpt_path=last", epochs=3)
    assert cli.trainer.current_epoch == 3
    assert_every_checkpoint_loads(run)
    assert_clean_history(run)


def _digests(run: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((run / "checkpoints").glob("*.ckpt"))
    }


def test_non_finite_loss_names_the_step_and_keeps_last_checkpoint(tmp_path):
    root = tmp_path / "runs"
    helpers_slow.PoisonBatch.snapshot = {}
    with pytest.raises(FloatingPointError, match=r"epoch 1, global step 3 \(batch 1\)"):
        fit(root, "--trainer.callbacks+=tests.helpers_slow.PoisonBatch", epochs=2)
    run = the_run(root)
    assert "last.ckpt" in helpers_slow.PoisonBatch.snapshot
    assert _digests(run) == helpers_slow.PoisonBatch.snapshot  # nothing rewritten after the NaN
    assert assert_every_checkpoint_loads(run)["last.ckpt"]["epoch"] == 0


def test_non_finite_weights_never_reach_a_checkpoint(tmp_path):
    root = tmp_path / "runs"
    helpers_slow.PoisonWeights.snapshot = {}
    args = [
        "--trainer.callbacks+=tests.helpers_slow.PoisonWeights",
        "--trainer.callbacks+=seglab.runs.guards.FiniteWeightsGuard",
    ]
    with pytest.raises(FloatingPointError, match=r"Non-finite weights .* global step 4"):
        fit(root, *args, epochs=2)
    run = the_run(root)
    assert "last.ckpt" in helpers_slow.PoisonWeights.snapshot
    assert _digests(run) == helpers_slow.PoisonWeights.snapshot
    assert_every_checkpoint_loads(run)


def test_finite_weights_guard_refuses_a_nan_save_and_disables_save_on_exception(tmp_path):
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import ModelCheckpoint

    from seglab.runs.guards import FiniteWeightsGuard

    mc = ModelCheckpoint(dirpath=tmp_path, save_on_exception=True)
    trainer = SimpleNamespace(checkpoint_callbacks=[mc], current_epoch=3, global_step=42)
    guard = FiniteWeightsGuard()
    guard.on_save_checkpoint(trainer, None, {"state_dict": {"w": torch.ones(2)}})
    with pytest.raises(FloatingPointError, match="global step 42"):
        guard.on_save_checkpoint(trainer, None, {"state_dict": {"w": torch.tensor([1.0, 1e39])}})
    guard.on_exception(trainer, None, FloatingPointError("nan"))
    assert mc.save_on_exception is False


def test_last_checkpoint_is_the_last_epoch(tmp_path):
    """Lightning 2.6 rewrites save_last only when a top-k file is saved at the same step: the
    CLI's second, unmonitored ModelCheckpoint keeps last.ckpt at the last epoch."""
    # monitor the epoch with mode min: only epoch 0 is ever "best", no later top-k save happens
    cli = fit(tmp_path / "runs", "--run.monitor=epoch", "--run.mode=min", epochs=2)
    last = load_checkpoint_file(cli.run_dir / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 1 and last["global_step"] == 2 * STEPS_PER_EPOCH


def test_deterministic_resume_reaches_the_same_weights(tmp_path):
    """Shuffle order and augmentation are functions of (seed, epoch) (``SeededEpochSampler``),
    so a run stopped after epoch 1 and resumed ends on exactly the weights of a straight run."""
    det = "--trainer.deterministic=true"
    straight = fit(tmp_path / "a", det, epochs=2)
    expected = {k: v.clone() for k, v in straight.model.state_dict().items()}
    fit(tmp_path / "b", det, "--trainer.callbacks+=tests.helpers_slow.StopAfterEpochs", epochs=2)
    resumed = fit(tmp_path / "b", det, "--ckpt_path=last", epochs=2)
    assert resumed.trainer.global_step == straight.trainer.global_step
    got = resumed.model.state_dict()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
