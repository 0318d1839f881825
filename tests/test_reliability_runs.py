"""Run folders that cannot collide, and resumes that leave a clean history (issue 20, 1 and 4).

* A run folder belongs to one experiment (``run.json``); ``SEGLAB_RUN_DIR`` only carries rank 0's
  folder to the other ranks of one launch: a second launch into a folder that holds a run is
  refused unless it resumes that run, and one process's earlier launch never leaks its folder
  into the next.
* ``run.lock`` keeps a second writer out and names the holder; a dead holder's lock is taken
  over.
* A resume drops the ``metrics.csv`` rows after the checkpoint's step (atomically), removes the
  temporary files of interrupted writes, leaves only the ``save_top_k`` best files, and
  ``summary.json`` says how the run ended.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest

from seglab.cli import run_cli
from seglab.runs.csv_logger import ResumableCSVLogger
from seglab.runs.ownership import RunFolderError, RunLock
from tests import helpers_slow
from tests.conftest import tiny_args

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "experiments" / "default.yaml")
TINY = [*tiny_args(8), "--trainer.num_sanity_val_steps=0", "--run.num_overlays=0"]


def fit(root: Path, *extra: str, epochs: int = 1):
    args = ["fit", "--config", CONFIG, f"--run.root={root}", *TINY]
    return run_cli([*args, f"--trainer.max_epochs={epochs}", *extra])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def assert_no_duplicated_step(run: Path) -> None:
    """Each training step and each validation is logged once."""
    for column in ("train/loss", "val/mIoU"):
        steps = [r["step"] for r in rows(run) if r.get(column)]
        assert steps and len(steps) == len(set(steps)), (column, steps)


# ------------------------------------------------------------------------- collisions
def test_each_launch_of_a_process_gets_its_own_folder(tmp_path):
    """The folder a launch exported for its DDP ranks does not capture the next launch."""
    first = fit(tmp_path / "runs")
    second = fit(tmp_path / "runs")
    assert first.run_dir != second.run_dir
    assert json.loads((first.run_dir / "run.json").read_text())["experiment"] == "default"


def test_another_experiment_into_an_exported_run_folder_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared_run"
    monkeypatch.setenv("SEGLAB_RUN_DIR", str(shared))
    first = fit(tmp_path / "runs", "--run.experiment=expA")
    assert first.run_dir == shared
    before = {p.name: digest(p) for p in [shared / "config.yaml", *shared.glob("checkpoints/*")]}
    refused = r"belongs to experiment 'expA'.*this launch is .*expB"
    with pytest.raises(RunFolderError, match=refused):
        fit(tmp_path / "runs", "--run.experiment=expB", "--model.init_args.lr=0.01")
    after = {p.name: digest(p) for p in [shared / "config.yaml", *shared.glob("checkpoints/*")]}
    assert after == before  # nothing of expA was touched
    assert json.loads((shared / "summary.json").read_text())["experiment"] == "expA"


def test_a_second_launch_of_the_same_experiment_resumes_or_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared_run"
    monkeypatch.setenv("SEGLAB_RUN_DIR", str(shared))
    fit(tmp_path / "runs", "--run.experiment=expA")
    with pytest.raises(RunFolderError, match="already holds a run of 'expA'.*--ckpt_path last"):
        fit(tmp_path / "runs", "--run.experiment=expA")
    resumed = fit(tmp_path / "runs", "--run.experiment=expA", "--ckpt_path=last", epochs=2)
    assert resumed.run_dir == shared and resumed.trainer.current_epoch == 2
    assert_no_duplicated_step(shared)


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_the_lock_names_its_holder_and_a_dead_holder_is_taken_over(tmp_path, live_pid):
    run = tmp_path / "run"
    run.mkdir()
    holder = {"pid": live_pid, "host": socket.gethostname(), "started": "2026-12-01 10:00:00"}
    (run / "run.lock").write_text(json.dumps(holder))
    with pytest.raises(RunFolderError, match=rf"pid {live_pid} on host .* \(since 2026-12-01"):
        RunLock(run).acquire()
    other_host = holder | {"host": "node-7", "pid": 1}
    (run / "run.lock").write_text(json.dumps(other_host))
    with pytest.raises(RunFolderError, match="pid 1 on host node-7"):
        RunLock(run).acquire()  # another host's process cannot be checked: refused
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    (run / "run.lock").write_text(json.dumps(holder | {"pid": int(dead.stdout)}))
    lock = RunLock(run).acquire()  # stale: its process is gone
    assert json.loads((run / "run.lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (run / "run.lock").exists()


def test_two_resumes_of_one_run_at_once_are_refused(tmp_path, live_pid):
    first = fit(tmp_path / "runs")
    assert not (first.run_dir / "run.lock").exists()  # released at the end
    holder = {"pid": live_pid, "host": socket.gethostname(), "started": "now"}
    (first.run_dir / "run.lock").write_text(json.dumps(holder))
    csv_before = (first.run_dir / "metrics.csv").read_bytes()
    with pytest.raises(RunFolderError, match=f"being written by pid {live_pid}"):
        fit(tmp_path / "runs", "--ckpt_path=last", epochs=2)
    assert (first.run_dir / "metrics.csv").read_bytes() == csv_before


# -------------------------------------------------------------------------------- resume
def test_resume_drops_the_rows_after_the_checkpoint_step(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lines = ["epoch,step,train/loss"] + [f"{s // 2},{s},{s / 10}" for s in range(6)]
    (run / "metrics.csv").write_text("\n".join(lines) + "\n1,6,0.")  # torn last line
    logger = ResumableCSVLogger(save_dir=str(run), name="", version="", resume_step=3)
    logger.log_metrics({"train/loss": 9.0}, step=3)
    logger.save()
    got = rows(run)
    assert [r["step"] for r in got] == ["0", "1", "2", "3"] and got[-1]["train/loss"] == "9.0"
    assert not list(run.glob(".*.tmp"))


def test_resume_cleans_temporary_files_and_stale_best_checkpoints(tmp_path):
    first = fit(tmp_path / "runs")
    ckpts = first.run_dir / "checkpoints"
    (ckpts / ".last.ckpt.abc123.tmp").write_bytes(b"")  # an interrupted write's leftover
    (first.run_dir / ".summary.json.x1.tmp").write_bytes(b"{")
    (ckpts / "best-epoch=007.ckpt").write_bytes((ckpts / "last.ckpt").read_bytes())  # stale
    resumed = fit(tmp_path / "runs", "--ckpt_path=last", "--run.monitor=step", epochs=3)
    assert resumed.run_dir == first.run_dir
    assert not list(first.run_dir.rglob("*.tmp"))
    best = sorted(p.name for p in ckpts.glob("best-*.ckpt"))
    assert best == ["best-epoch=002.ckpt"], best  # save_top_k=1: exactly one best file
    assert_no_duplicated_step(first.run_dir)


class Interrupt(L.Callback):
    """Presses Ctrl-C (raises KeyboardInterrupt) at the second training step."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == 1:
            raise KeyboardInterrupt


def test_summary_states_how_the_run_ended(tmp_path):
    done = fit(tmp_path / "a")
    assert json.loads((done.run_dir / "summary.json").read_text())["status"] == "finished"
    helpers_slow.PoisonBatch.snapshot = {}
    with pytest.raises(FloatingPointError):  # resumed, then a NaN loss at epoch 1, step 3
        poison = "--trainer.callbacks+=tests.helpers_slow.PoisonBatch"
        fit(tmp_path / "a", "--ckpt_path=last", poison, epochs=2)
    summary = json.loads((done.run_dir / "summary.json").read_text())
    assert summary["status"] == "stopped: non-finite loss at step 3", summary["status"]
    with pytest.raises(SystemExit):  # Lightning exits after a graceful shutdown
        fit(tmp_path / "b", "--trainer.callbacks+=tests.test_reliability_runs.Interrupt")
    (run,) = (tmp_path / "b" / "default").iterdir()
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
