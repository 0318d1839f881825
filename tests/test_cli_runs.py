"""One folder per training run, readable logs, one-line errors, the command's help.

validate / test / predict write into the checkpoint's run folder; a failed start leaves no
folder; a run whose output goes to a pipe prints progress lines while it trains.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from seglab.cli import main, run_cli
from tests.conftest import tiny_args

REPO = Path(__file__).resolve().parents[1]
DEFAULT = str(REPO / "experiments" / "default.yaml")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """The folder of one tiny two-epoch fit of the default experiment."""
    root = tmp_path_factory.mktemp("runs")
    cli = run_cli(
        ["fit", "--config", DEFAULT, f"--run.root={root}", "--trainer.max_epochs=2",
         "--run.num_overlays=2", *tiny_args(8)]
    )  # fmt: skip
    return cli.run_dir


def test_validate_test_predict_write_into_the_checkpoints_run_folder(run, tmp_path):
    ckpt = run / "checkpoints" / "last.ckpt"
    before = set(run.parent.parent.rglob("*"))
    common = [f"--ckpt_path={ckpt}", "--trainer.enable_progress_bar=false", *tiny_args(8)[:3]]
    folders = {}
    for sub in ("validate", "test", "predict"):
        cli = run_cli([sub, "--config", DEFAULT, f"--run.root={run.parent.parent}", *common])
        folders[sub] = cli.run_dir
    assert {p.parent.name for p in folders.values()} == {"validate", "test", "predictions"}
    assert all(p.parent.parent == run for p in folders.values())
    new = {p for p in set(run.parent.parent.rglob("*")) - before if p.parent == run.parent}
    assert new == set()  # no new runs/<experiment>/<time>
    for sub in ("validate", "test"):
        assert (folders[sub] / "confusion_matrix.png").is_file()
        assert len(list((folders[sub] / "overlays").glob("*.png"))) == 4
    out = tmp_path / "elsewhere"
    cli = run_cli(["validate", "--config", DEFAULT, *common], output=str(out))
    assert cli.run_dir == out and (out / "per_class.csv").is_file()


def test_failed_start_leaves_no_folder(tmp_path, capsys):
    root = tmp_path / "runs"
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", DEFAULT, f"--run.root={root}", "--data.dataset=folder",
              "--data.root=/no/such/folder", "--data.dataset_kwargs={}"])  # fmt: skip
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "seglab: error: Data root /no/such/folder does not exist" in err
    assert "Traceback" not in err and "Namespace(" not in err
    assert not root.exists()  # nothing left behind, not even runs/default/
    with pytest.raises(ValueError, match="optimizer must be"):  # --debug keeps the traceback
        main(["fit", "--config", DEFAULT, f"--run.root={root}", "--debug",
              "--model.init_args.optimizer=adam"])  # fmt: skip
    assert not root.exists()


def test_task_errors_are_one_line_not_a_config_dump(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", DEFAULT, f"--run.root={tmp_path}",
              "--model.init_args.optimizer=adam"])  # fmt: skip
    err = capsys.readouterr().err
    assert "seglab: error: optimizer must be 'adamw' or 'sgd', got 'adam'." in err
    assert "Union" not in err and "Namespace(" not in err and "Traceback" not in err


def test_run_folder_has_pictures_table_and_learning_rate(run):
    summary = json.loads((run / "summary.json").read_text())
    with (run / "per_class.csv").open() as f:
        rows = {r["class"]: r for r in csv.DictReader(f)}
    names = ["background", "disc", "square", "triangle", "ring"]
    assert list(rows) == names
    for name, row in rows.items():  # the table agrees with the logged per-class metric
        logged = summary["final"].get(f"val/IoU/{name}")
        if logged is not None:
            assert float(row["IoU"]) == pytest.approx(logged, abs=1e-4)
    assert (run / "confusion_matrix.png").is_file() and (run / "confusion_matrix.csv").is_file()
    overlays = sorted((run / "predictions").glob("*.png"))
    assert len(overlays) == 2
    from PIL import Image

    assert Image.open(overlays[0]).height >= 256 + 24  # a panel of >= 256 px and its title
    with (run / "metrics.csv").open() as f:
        header = next(csv.reader(f))
    assert any(h.startswith("lr-") for h in header), header


def test_progress_lines_arrive_while_training_through_a_pipe(tmp_path):
    args = [sys.executable, "-m", "seglab", "fit", "--config", DEFAULT, f"--run.root={tmp_path}",
            "--trainer.max_epochs=3", "--run.num_overlays=0", *tiny_args(16)]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="0")
    proc = subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines, first_progress_while_running = [], None
    for line in proc.stdout:
        lines.append(line.rstrip())
        if line.startswith("[seglab] epoch 1/3 step") and first_progress_while_running is None:
            first_progress_while_running = proc.poll() is None
            started = time.time()
    proc.wait(timeout=600)
    text = "\n".join(lines)
    assert proc.returncode == 0, text[-3000:]
    assert first_progress_while_running, text[-3000:]  # read while the process still trained
    assert time.time() - started > 0
    steps = [ln for ln in lines if ln.startswith("[seglab] epoch") and " step " in ln]
    assert len(steps) >= 3 * 4 and "train/loss" in steps[0] and "lr " in steps[0]
    epochs = [ln for ln in lines if " done in " in ln]
    assert len(epochs) == 3 and "val/mIoU" in epochs[-1]
    assert lines[0].startswith("seglab fit: run folder ") or any(
        ln.startswith("seglab fit: run folder ") for ln in lines[:5]
    )
    assert any(ln.startswith("seglab fit: finished; results in ") for ln in lines[-3:])
    for noise in ("LeafSpec", "litlogger", "Total Flops", "Total FLOPs", "━"):
        assert noise not in text, noise


def test_help_lists_every_command_and_experiments_their_purpose(capsys):
    main(["--help"])
    text = capsys.readouterr().out
    for cmd in ("fit", "validate", "test", "predict", "models", "sweep", "compare", "export",
                "check-data", "experiments"):  # fmt: skip
        assert any(line.split()[:1] == [cmd] for line in text.splitlines()), cmd
    assert ".venv/bin/seglab" in text
    main(["experiments"])
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line}
    for path in (REPO / "experiments").glob("*.yaml"):
        if path.stem == "base":
            continue
        purpose = path.read_text().splitlines()[0].lstrip("# ").strip()
        assert purpose in listed[path.stem]
    assert yaml.safe_load((REPO / "experiments" / "default.yaml").read_text())


def test_progress_log_lines_in_short_epochs_and_slow_validations(monkeypatch):
    import io
    from types import SimpleNamespace

    import torch

    from seglab.runs import progress

    out = io.StringIO()  # not a terminal
    log = progress.ProgressLog(stream=out)
    trainer = SimpleNamespace(
        is_global_zero=True, max_epochs=2, current_epoch=0, num_training_batches=6,
        log_every_n_steps=50, optimizers=[], callback_metrics={}, sanity_checking=False,
        num_val_batches=[3], num_sanity_val_batches=[2],
    )  # fmt: skip
    log.on_train_epoch_start(trainer, None)
    for i in range(6):
        log.on_train_batch_end(trainer, None, {"loss": torch.tensor(0.5)}, None, i)
    steps = [ln for ln in out.getvalue().splitlines() if " step " in ln]
    assert [ln.split(" step ")[1].split(" ")[0] for ln in steps] == ["1/6", "2/6", "3/6", "4/6",
                                                                     "5/6", "6/6"]  # fmt: skip
    monkeypatch.setattr(progress, "VAL_EVERY_S", 0.0)
    log.on_validation_epoch_start(trainer, None)
    log.on_validation_batch_end(trainer, None, None, None, 1)
    assert out.getvalue().splitlines()[-1].startswith("[seglab] validation batch 2/3 | ")


def test_validate_from_a_checkpoint_takes_tta_and_sliding_window(run, tmp_path):
    ckpt = run / "checkpoints" / "last.ckpt"
    cli = run_cli(
        ["validate", "--config", DEFAULT, f"--ckpt_path={ckpt}", *tiny_args(8)[:3],
         "--model.init_args.tta={flip: true}",
         "--model.init_args.sliding_window={window: [16, 16], overlap: 0.5}",
         "--trainer.enable_progress_bar=false"],
        output=str(tmp_path / "val"),
    )  # fmt: skip
    assert cli.model.hparams.tta == {"flip": True}
    assert cli.model.hparams.sliding_window == {"window": [16, 16], "overlap": 0.5}


def test_a_null_in_a_dotted_model_option_reaches_the_task_as_none(tmp_path):
    cli = run_cli(
        ["fit", "--config", DEFAULT, f"--run.root={tmp_path}", "--trainer.max_epochs=1",
         *tiny_args(8), "--model.init_args.model_kwargs.weights=null"]
    )  # fmt: skip
    kwargs = cli.model.hparams.model_kwargs
    assert "weights" in kwargs and kwargs["weights"] is None, kwargs
    saved = yaml.safe_load((cli.run_dir / "config.yaml").read_text())
    assert saved["model"]["init_args"]["model_kwargs"]["weights"] is None
