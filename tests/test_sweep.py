"""``seglab sweep``: the grid x seeds plan, the grid files, and a real two-run sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from seglab.cli.sweep import combo_name, expand_grid, main, plan
from seglab.compare import compare, load_runs
from tests.conftest import tiny_args

REPO = Path(__file__).resolve().parents[1]
SWEEPS = REPO / "experiments" / "sweeps"


def test_plan_is_grid_times_seeds():
    grid = {"model.init_args.model_kwargs.output_stride": [8, 16], "model.init_args.lr": [0.1]}
    runs = plan(["a.yaml"], grid, [0, 1, 2], "abl", ["--trainer.max_epochs=3"])
    assert len(runs) == 2 * 1 * 3
    first = runs[0]
    assert first.experiment == "abl__output_stride=8,lr=0.1"
    assert first.argv == [
        "fit",
        "--config",
        "a.yaml",
        "--trainer.max_epochs=3",
        "--model.init_args.model_kwargs.output_stride=8",
        "--model.init_args.lr=0.1",
        "--seed_everything=0",
        "--run.experiment=abl__output_stride=8,lr=0.1",
    ]
    assert [r.seed for r in runs[:3]] == [0, 1, 2]
    assert len({r.experiment for r in runs}) == 2  # seeds share their combination's name


def test_names_and_values():
    assert combo_name({"a.rates": [6, 12, 18], "b.flag": True, "c.lr": 0.0003}) == (
        "rates=6-12-18,flag=true,lr=0.0003"
    )
    assert combo_name({"x.loss.dice": 1, "y.model_kwargs.dice": 2}) == (
        "loss.dice=1,model_kwargs.dice=2"
    )
    with pytest.raises(ValueError, match="non-empty list"):
        expand_grid({"a": 3})


def test_grid_file_dry_run(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    runs = main(["--grid-file", str(SWEEPS / "deeplabv3_os_rates.yaml"), "--dry-run"])
    assert len(runs) == 2 * 3 * 3
    out = capsys.readouterr().out
    assert "6 combination(s) x 3 seed(s) = 18" in out
    assert "'--model.init_args.model_kwargs.aspp_rates=[3, 6, 9]'" in out
    assert {r.overrides["model.init_args.model_kwargs.output_stride"] for r in runs} == {8, 16}
    config = yaml.safe_load((SWEEPS / "deeplabv3_os_rates.yaml").read_text())["config"]
    assert (REPO / config).is_file()


def test_wandb_sweep_config_matches_the_grid():
    wb = yaml.safe_load((SWEEPS / "wandb_deeplabv3_os_rates.yaml").read_text())
    grid = yaml.safe_load((SWEEPS / "deeplabv3_os_rates.yaml").read_text())
    assert wb["method"] == "grid" and wb["metric"] == {"name": "val/mIoU", "goal": "maximize"}
    params = wb["parameters"]
    for key, values in grid["grid"].items():
        assert params[key]["values"] == values
    assert params["seed_everything"]["values"] == grid["seeds"]
    cmd = wb["command"]
    assert cmd[-1] == "${args}" and "--run.wandb=true" in cmd
    assert cmd[cmd.index("--config") + 1] == grid["config"]
    # The agent formats ${args} as --<key>=<str(value)>: the CLI must read that back.
    for key, spec in params.items():
        for value in spec["values"]:
            assert yaml.safe_load(str(value)) == value, (key, value)


def test_sweep_runs_each_combination_as_its_own_run(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    root = tmp_path / "runs"
    tiny = [
        f"--run.root={root}",
        *tiny_args(8),
        "--trainer.max_epochs=1",
        "--run.num_overlays=0",
    ]
    grid = json.dumps({"model.init_args.lr": [0.001, 0.01]})
    argv = ["--config", "experiments/default.yaml", "--grid", grid, "--seeds", "3"]
    runs = main([*argv, "--name", "lr", "--", *tiny])  # each run in its own process
    assert [r.experiment for r in runs] == ["lr__lr=0.001", "lr__lr=0.01"]
    manifest = json.loads((root / "lr.sweep.json").read_text())
    assert [r["status"] for r in manifest["runs"]] == ["ok", "ok"]
    table = compare(load_runs([str(root / "lr__*")]), ["val/mIoU"])
    assert sorted(r.label for r in table.rows) == ["lr__lr=0.001", "lr__lr=0.01"]
    for row in table.rows:
        (run,) = row.runs
        assert run.seed == 3 and run.status == "finished"
        lr = float(row.label.split("=")[-1])
        assert run.config["model"]["init_args"]["lr"] == lr
    # --resume skips what is finished; the new seed runs in-process.
    one = ["--config", "experiments/default.yaml", "--grid", '{"model.init_args.lr": [0.001]}']
    again = main(
        [*one, "--seeds", "3", "4", "--name", "lr", "--resume", "--in-process", "--", *tiny]
    )
    assert [(r.experiment, r.seed) for r in again] == [("lr__lr=0.001", 3), ("lr__lr=0.001", 4)]
    statuses = [r["status"] for r in json.loads((root / "lr.sweep.json").read_text())["runs"]]
    assert statuses == ["skipped", "ok"]
    seeds = sorted(run.seed for run in load_runs(root / "lr__lr=0.001"))
    assert seeds == [3, 4]
