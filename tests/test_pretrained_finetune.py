"""Fine-tuning controls: ``encoder_lr_mult``, ``freeze_encoder_epochs`` and ``freeze_bn``, each
checked in the learning rates Lightning logs and in the encoder's tensors after each epoch."""

from __future__ import annotations

import copy
import csv

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger

from seglab.data.datamodule import SegDataModule
from seglab.tasks import SegmentationTask


class Snapshots(L.Callback):
    """The model's state at the end of every training epoch."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.states.append(copy.deepcopy(pl_module.model.state_dict()))


def fit(tmp_path, **hparams):
    L.seed_everything(0)
    task = SegmentationTask(
        model="unet", model_kwargs={"base_channels": 4, "depth": 3}, lr=0.01,
        scheduler="constant", **hparams,
    )  # fmt: skip
    start = copy.deepcopy(task.model.state_dict())
    snaps = Snapshots()
    trainer = L.Trainer(
        max_epochs=2, logger=CSVLogger(tmp_path, name="", version=""), log_every_n_steps=1,
        callbacks=[LearningRateMonitor("step"), snaps], enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    dm = SegDataModule(
        dataset_kwargs={"size": 32, "num_samples": 8, "num_classes": 2}, batch_size=4, num_workers=0
    )
    trainer.fit(task, dm)
    with open(tmp_path / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("lr-AdamW/encoder")]
    return start, snaps.states, rows


def encoder_bn(state, stat="running_mean"):
    return {k: v for k, v in state.items() if k.startswith("encoder.") and k.endswith(stat)}


def test_freeze_then_encoder_at_a_tenth(tmp_path):
    start, (after0, after1), rows = fit(tmp_path, encoder_lr_mult=0.1, freeze_encoder_epochs=1)
    steps = {int(r["step"]): r for r in rows}
    per_epoch = len(steps) // 2
    for step, r in steps.items():
        want = 0.0 if step < per_epoch else 0.001
        assert float(r["lr-AdamW/encoder"]) == pytest.approx(want), step
        assert float(r["lr-AdamW/decoder"]) == pytest.approx(0.01)
        assert float(r["lr-AdamW/encoder_no_decay"]) == pytest.approx(want)
    enc = [k for k in start if k.startswith("encoder.")]
    assert all(torch.equal(after0[k], start[k]) for k in enc)  # frozen: weights and BN stats
    dec = "decoder.ups.0.weight"
    assert dec in start and not torch.equal(after0[dec], start[dec])
    conv = next(k for k in enc if start[k].ndim == 4)
    assert not torch.equal(after1[conv], start[conv])  # trains from epoch 1 on


def test_freeze_bn_keeps_encoder_statistics(tmp_path):
    start, (_, after1), rows = fit(tmp_path, freeze_bn=True)
    assert float(rows[0]["lr-AdamW/encoder"]) == pytest.approx(0.01)
    for k, v in encoder_bn(start).items():
        assert torch.equal(after1[k], v), k
    conv = next(k for k in start if k.startswith("encoder.") and start[k].ndim == 4)
    assert not torch.equal(after1[conv], start[conv])  # the encoder still trains
    dec = [k for k in start if k.startswith("decoder.") and k.endswith("running_mean")]
    assert any(not torch.equal(after1[k], start[k]) for k in dec)


def test_bad_fine_tuning_values_are_refused():
    with pytest.raises(ValueError, match="encoder_lr_mult"):
        SegmentationTask(encoder_lr_mult=-1)
    with pytest.raises(ValueError, match="freeze_encoder_epochs"):
        SegmentationTask(freeze_encoder_epochs=-2)
