"""Fine-tuning from pretrained weights: a frozen encoder, frozen BatchNorm, the weights record.

:class:`FineTuning` is returned by ``SegmentationTask.configure_callbacks`` (so it works with
or without the CLI):

- ``freeze_encoder_epochs: N``: for the first ``N`` epochs the encoder takes no gradient and
  runs in eval mode (its BatchNorm statistics stay the pretrained ones); its learning rate is 0
  in the schedule (``seglab.tasks.optim``), which the logged ``lr-*/encoder`` shows.
- ``freeze_bn: true``: the encoder's BatchNorm layers keep their running statistics for the
  whole fit (eval mode); their affine parameters still train. For small batches, where batch
  statistics are noise.
- At fit start, the encoder's ``weights_info`` (source, file, SHA-256, match report) is logged,
  written to ``weights.json`` in the run folder and appended to its ``config.yaml`` as a
  comment, so a run says which weights it started from.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

log = logging.getLogger(__name__)


def encoder_of(pl_module: L.LightningModule) -> nn.Module | None:
    """``pl_module.model.encoder`` or None."""
    return getattr(getattr(pl_module, "model", None), "encoder", None)


def weights_record(pl_module: L.LightningModule) -> dict[str, Any] | None:
    """The encoder's ``weights_info`` without the per-tensor lists (None for random init)."""
    info = getattr(encoder_of(pl_module), "weights_info", None) or {}
    if info.get("weights") is None:
        return None
    out = {k: v for k, v in info.items() if k != "report"}
    if "report" in info:
        out["tensors"] = info["report"]["counts"]
    return out


class FineTuning(L.Callback):
    """Encoder freezing, frozen BatchNorm and the weights record (see the module docstring).

    Args:
        freeze_encoder_epochs: Epochs at the start with the encoder frozen.
        freeze_bn: Keep the encoder's BatchNorm statistics fixed for the whole fit.
    """

    def __init__(self, freeze_encoder_epochs: float = 0, freeze_bn: bool = False) -> None:
        if freeze_encoder_epochs < 0:
            raise ValueError(f"freeze_encoder_epochs must be >= 0, got {freeze_encoder_epochs}.")
        self.freeze_encoder_epochs, self.freeze_bn = freeze_encoder_epochs, freeze_bn

    def frozen(self, trainer: L.Trainer) -> bool:
        return trainer.current_epoch < self.freeze_encoder_epochs

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if (self.freeze_encoder_epochs or self.freeze_bn) and encoder_of(pl_module) is None:
            raise ValueError(
                "freeze_encoder_epochs / freeze_bn need a model with an .encoder; "
                f"{type(pl_module.model).__name__} has none."
            )
        self.record(trainer, pl_module)

    @rank_zero_only
    def record(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Logs the weights used and writes them into the run folder."""
        rec = weights_record(pl_module)
        if rec is None:
            return
        log.warning(
            "Encoder weights: %s from %s (sha256 %s), tensors %s",
            rec.get("weights"),
            rec.get("source"),
            str(rec.get("sha256", "-"))[:16],
            rec.get("tensors", "-"),
        )
        report = encoder_of(pl_module).weights_info.get("report", {})
        counts = report.get("counts", {})
        if any(counts.get(k) for k in ("missing", "unexpected", "mismatched")):
            log.warning("Partial weights load (weights_strict: false): %s", json.dumps(report))
        folder = Path(trainer.log_dir or trainer.default_root_dir)
        if not folder.is_dir():
            return
        full = dict(encoder_of(pl_module).weights_info)
        (folder / "weights.json").write_text(json.dumps(full, indent=2) + "\n")
        config = folder / "config.yaml"
        if config.is_file() and "# weights:" not in config.read_text():
            lines = [f"#   {k}: {v}" for k, v in rec.items()]
            with config.open("a") as f:
                f.write("# weights: (recorded by seglab at fit start)\n" + "\n".join(lines) + "\n")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        encoder = encoder_of(pl_module)
        if encoder is not None and self.freeze_encoder_epochs:
            encoder.requires_grad_(not self.frozen(trainer))
            encoder.train(not self.frozen(trainer))

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        encoder = encoder_of(pl_module)
        if encoder is None:
            return
        if self.freeze_encoder_epochs and self.frozen(trainer):
            encoder.eval()
        elif self.freeze_bn:
            for m in encoder.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
