"""Every shipped config is alive: it parses, prints, and completes a fast_dev_run.

Experiments whose real data set is absent run on the synthetic shapes instead (class count and
channels folded to the experiment's), so a renamed argument can never leave a dead file behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from seglab.cli import run_cli
from seglab.cli.config_base import _chain
from seglab.models.encoders import offline_weights

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.name for p in (REPO / "experiments").glob("*.yaml") if p.name != "base.yaml")
FRAGMENTS = sorted(
    str(p.relative_to(REPO / "experiments"))
    for p in (REPO / "experiments" / "trainer").glob("*.yaml")
)
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def resolved(name: str) -> dict:
    """The experiment's merged YAML (bases first), enough to pick smoke-test overrides."""
    merged: dict = {}
    for path in _chain(REPO / "experiments" / name):
        data = yaml.safe_load(path.read_text()) or {}
        for key, value in data.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


def smoke_overrides(name: str) -> list[str]:
    cfg = resolved(name)
    data, model = cfg["data"], cfg["model"]["init_args"]
    args = ["--trainer.fast_dev_run=1", "--data.batch_size=2", "--data.num_workers=0", *QUIET]
    if (
        model["model"] in ("unet", "resunet", "unetplusplus", "unet3plus")
        and model.get("encoder_name", "unet") == "unet"
    ):
        args.append("--model.init_args.model_kwargs.base_channels=8")
        if model["model"] == "unet3plus":
            args.append("--model.init_args.model_kwargs.cat_channels=8")
    if "tta" in model or "sliding_window" in model:  # unit-tested in test_inference.py
        args += ["--model.init_args.tta=null", "--model.init_args.sliding_window=null"]
    weights = (model.get("model_kwargs") or {}).get("weights")
    if weights == "imagenet" and offline_weights(model.get("encoder_name", "unet")) is None:
        args.append("--model.init_args.model_kwargs.weights=random")  # no hub here
    root = data.get("root")
    real = data["dataset"] == "ct_slices" or (root is not None and (REPO / root).is_dir())
    if data["dataset"] == "ct_slices":
        args.append("--data.dataset_kwargs.slice_size=48")
    elif data["dataset"] == "folder" and real:
        args.append("--data.val_transforms=[{name: CenterCrop, height: 128, width: 128}]")
    elif not real:
        k = 2 if model["task"] == "binary" else model["num_classes"]
        kw = f"{{size: 64, num_samples: 4, num_classes: {k}, channels: {model['in_channels']}}}"
        args += [
            "--data.dataset=synthetic",
            "--data.root=null",
            f"--data.dataset_kwargs={kw}",
            "--data.train_transforms=null",
            "--data.val_transforms=null",
            "--data.val_batch_size=2",
            "--data.mean=null",
            "--data.std=null",
            "--data.train_split=train",
            "--data.val_split=val",
        ]
    return args


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_prints_its_config(name, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--config", f"experiments/{name}", "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["model"] == resolved(name)["model"]["init_args"]["model"]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_completes_fast_dev_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    torch.set_num_threads(2)
    cli = run_cli(
        ["fit", "--config", f"experiments/{name}", f"--run.root={tmp_path}", *smoke_overrides(name)]
    )
    assert cli.trainer.global_step == 1
    assert torch.isfinite(torch.tensor(float(cli.trainer.callback_metrics["train/loss"])))


def assert_subset(want: object, got: object, where: str) -> None:
    """Every key of ``want`` (recursively) is in ``got`` with the same value."""
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{where}: {got!r} is not a mapping"
        for key, value in want.items():
            assert key in got, f"{where}.{key} is missing from the printed config"
            assert_subset(value, got[key], f"{where}.{key}")
    else:
        assert got == want, f"{where}: printed {got!r}, the fragment says {want!r}"


@pytest.mark.parametrize("fragment", FRAGMENTS)
def test_trainer_fragment_parses(fragment, capsys, monkeypatch):
    """The fragment's trainer settings reach the resolved config, over the experiment's."""
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(
            [
                "fit",
                "--config",
                "experiments/default.yaml",
                "--config",
                f"experiments/{fragment}",
                "--print_config",
            ]
        )
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    wanted = yaml.safe_load((REPO / "experiments" / fragment).read_text())["trainer"]
    assert wanted, fragment
    assert_subset(wanted, printed["trainer"], "trainer")
    assert printed["model"]["init_args"]["model"] == "unet"  # the experiment is still there
