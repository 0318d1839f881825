"""Precision and speed switches: bf16-mixed, channels-last, torch.compile, the step timer."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

from seglab.cli import run_cli
from seglab.models import create_model
from seglab.runs.speed import CompileModel, StepTimer
from seglab.tasks import SegmentationTask
from tests.conftest import tiny_args

REPO = Path(__file__).resolve().parents[1]
TINY = [
    *tiny_args(),
    "--trainer.accelerator=cpu",
]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def read_metrics(run: Path) -> dict[str, list[float]]:
    """Every non-empty value of every column of ``metrics.csv``, in order."""
    out: dict[str, list[float]] = {}
    with open(run / "metrics.csv") as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                if v:
                    out.setdefault(k, []).append(float(v))
    return out


def fit(tmp_path: Path, *extra: str):
    args = ["fit", "--config", "experiments/default.yaml", f"--run.root={tmp_path / 'runs'}"]
    return run_cli([*args, *TINY, "--trainer.max_epochs=1", *extra])


def test_bf16_mixed_fit_runs_and_step_timer_logs(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cli = fit(
        tmp_path,
        "--trainer.precision=bf16-mixed",
        "--trainer.callbacks+=seglab.runs.speed.StepTimer",
    )
    assert cli.trainer.precision == "bf16-mixed"
    metrics = read_metrics(cli.run_dir)
    losses = metrics["train/loss"]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    assert all(torch.isfinite(torch.tensor(metrics["val/loss"])))
    # StepTimer: the first step apart from the median of the three following ones.
    (timer,) = [c for c in cli.trainer.callbacks if isinstance(c, StepTimer)]
    assert timer.first_step_s > 0 and len(timer.step_times) == 3
    assert metrics["perf/first_step_s"] == [pytest.approx(timer.first_step_s)]
    assert metrics["perf/step_s"] == [pytest.approx(sorted(timer.step_times)[1])]
    assert metrics["perf/images_per_s"][0] > 0 and "perf/data_s" in metrics


def test_bf16_autocast_logits_agree_with_fp32():
    torch.manual_seed(0)
    model = create_model("unet", 5, base_channels=8, depth=3).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.dtype == torch.bfloat16 and low.shape == ref.shape
    agreement = (low.float().argmax(1) == ref.argmax(1)).float().mean().item()
    assert agreement > 0.97, agreement
    scale = ref.abs().max().item()
    assert (low.float() - ref).abs().max().item() < 0.05 * scale


@pytest.mark.parametrize(
    "name, encoder, kwargs",
    [
        ("unet", "unet", {"base_channels": 4, "depth": 3}),
        ("unet3plus", "unet", {"base_channels": 4, "depth": 3, "cat_channels": 4, "cgm": True}),
        ("pspnet", "resnet18", {"channels": 16, "aux_head": True}),
    ],
)
def test_channels_last_gives_the_same_logits(name, encoder, kwargs):
    torch.manual_seed(0)
    dense = SegmentationTask(name, 3, encoder_name=encoder, model_kwargs=kwargs).eval()
    last = SegmentationTask(
        name, 3, encoder_name=encoder, model_kwargs=kwargs, channels_last=True
    ).eval()
    last.load_state_dict(dense.state_dict())
    conv = next(m for m in last.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 67, 93)
    with torch.no_grad():
        a, b = dense(x), last(x)
    assert a.shape == b.shape == (2, 3, 67, 93)
    torch.testing.assert_close(b.contiguous(), a, rtol=1e-4, atol=1e-5)


def test_compile_callback_from_yaml_keeps_checkpoint_names(tmp_path, monkeypatch):
    """The callback wiring, with the ``eager`` backend: inductor's C++ code generation takes
    about 40 s on this 2-core CPU for even the tiniest U-Net, too slow for the suite."""
    monkeypatch.chdir(REPO)
    fragment = tmp_path / "compile.yaml"
    callbacks = [
        {"class_path": "seglab.runs.speed.CompileModel", "init_args": {"backend": "eager"}},
        {"class_path": "seglab.runs.speed.StepTimer"},
    ]
    fragment.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    cli = fit(
        tmp_path,
        "--config",
        str(fragment),
        "--run.experiment=compiled",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
    )
    (comp,) = [c for c in cli.trainer.callbacks if isinstance(c, CompileModel)]
    assert comp.compiled and cli.model.model._compiled_call_impl is not None
    ckpt = torch.load(cli.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert not any("_orig_mod" in k for k in ckpt["state_dict"])
    task = SegmentationTask.load_from_checkpoint(
        cli.run_dir / "checkpoints" / "last.ckpt", weights_only=True
    )
    assert set(task.state_dict()) == set(cli.model.state_dict())
    assert "perf/first_step_s" in read_metrics(cli.run_dir)
