"""The LightningModule every seglab family extends: steps, loss, metrics, optimiser, once.

Families override small hooks (``compute_loss``, ``predict_logits``, ``extra_eval``), the way
torchgeo's ``BaseTask`` does, and never rewrite the steps. The task takes primitives only, so
``save_hyperparameters()`` makes every checkpoint rebuild its model by itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from seglab.data.io import load_checkpoint_file
from seglab.losses import SegLoss
from seglab.metrics.segmentation import SegMetrics, decide
from seglab.models import ModelOutput, create_model, main_logits
from seglab.models.inference import check_inference_options, infer
from seglab.models.pretrained import architecture_only
from seglab.models.registry import DEFAULTS_VERSION
from seglab.tasks.checkpoint import find_task_class
from seglab.tasks.finetune import FineTuning
from seglab.tasks.optim import build_optimizer
from seglab.tasks.options import TASKS, check_finetune, check_task  # noqa: F401 (old path)


class SegmentationTask(L.LightningModule):
    """Semantic segmentation with any registered architecture.

    Args:
        model: Architecture name (see ``seglab.models.list_models()``).
        num_classes: Logit channels: 1 for ``binary``, the class count otherwise.
        task: ``binary`` (sigmoid, threshold 0.5), ``multiclass`` (softmax, argmax) or
            ``multilabel`` (independent sigmoids).
        encoder_name: ``"unet"`` or a timm name; None uses the architecture's default.
        in_channels: Input image channels.
        model_kwargs: Extra architecture options (``base_channels``, ``output_stride``, ...).
        loss: ``{term: weight}``; see ``seglab.losses.LOSS_TERMS``.
        loss_kwargs: Per-term options, e.g. ``{"focal": {"gamma": 2.0}}``.
        ignore_index: Target value ignored by losses and metrics (255 for VOC), or None.
        class_weights: Per-class weights of the cross-entropy terms.
        batch_dice: Region losses sum over the whole batch (nnU-Net's 2D setting).
        class_names: Names for per-class metrics and overlays.
        optimizer: ``adamw`` or ``sgd``.
        lr: Peak learning rate.
        weight_decay: Weight decay.
        momentum: SGD momentum.
        scheduler: ``poly`` (DeepLab, power ``poly_power``), ``cosine`` or ``constant``.
        warmup_epochs: Linear warm-up length in epochs (fractions allowed).
        poly_power: Exponent of the poly schedule.
        encoder_lr_mult: Encoder learning rate as a multiple of ``lr`` (0.1 to fine-tune).
        freeze_encoder_epochs: Epochs at the start with the encoder frozen (lr 0, no grads).
        freeze_bn: Keep the encoder's BatchNorm statistics fixed (for small batches).
        channels_last: Use the channels-last memory format.
        volumetric: Reassemble CT slices into volumes at validation/test and log per-case Dice,
            pooled Dice and HD95 (needs ``ct_slices`` data).
        lcc: With ``volumetric``, also score the largest-connected-component liver.
        volume_classes: Label classes of the volumes (2 liver, 3 liver and tumour).
        tta: ``{scales: [0.75, 1.0, 1.25], flip: true}``: test-time augmentation at validate,
            test and predict (logits averaged), or None.
        sliding_window: ``{window: [512, 512], overlap: 0.5}``: tiled inference, or None.
        defaults_version: Version of the architectures' defaults the model is built with
            (``seglab.models.registry.DEFAULTS_VERSION``); checkpoints written before it existed
            load as version 1, the first round's networks.
    """

    def __init__(
        self,
        model: str = "unet",
        num_classes: int = 2,
        task: str = "multiclass",
        encoder_name: str | None = None,
        in_channels: int = 3,
        model_kwargs: dict[str, Any] | None = None,
        loss: dict[str, float] | None = None,
        loss_kwargs: dict[str, dict[str, Any]] | None = None,
        ignore_index: int | None = None,
        class_weights: list[float] | None = None,
        batch_dice: bool = False,
        class_names: list[str] | None = None,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        scheduler: str = "poly",
        warmup_epochs: float = 0.0,
        poly_power: float = 0.9,
        encoder_lr_mult: float = 1.0,
        freeze_encoder_epochs: float = 0,
        freeze_bn: bool = False,
        channels_last: bool = False,
        volumetric: bool = False,
        lcc: bool = True,
        volume_classes: int = 2,
        tta: dict[str, Any] | None = None,
        sliding_window: dict[str, Any] | None = None,
        defaults_version: int = DEFAULTS_VERSION,
    ) -> None:
        super().__init__()
        check_task(task, num_classes)
        check_finetune(encoder_lr_mult, freeze_encoder_epochs)
        check_inference_options(tta, sliding_window)
        scored = 2 if task == "binary" else num_classes
        if class_names is not None and len(class_names) != scored:
            raise ValueError(
                f"class_names has {len(class_names)} name(s) {list(class_names)} but the metrics "
                f"score {scored} class(es) (task={task!r}, num_classes={num_classes}"
                f"{'; binary scores background and foreground' if task == 'binary' else ''}). "
                f"Give {scored} names, or leave class_names out."
            )
        if optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {optimizer!r}.")
        if scheduler not in ("poly", "cosine", "constant"):
            raise ValueError(f"scheduler must be poly, cosine or constant, got {scheduler!r}.")
        self.save_hyperparameters()
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:
        """Rebuilds the task from a checkpoint alone, as the class it was trained with.

        ``SegmentationTask.load_from_checkpoint(path)`` on a ``UNetFamilyTask`` checkpoint
        returns a ``UNetFamilyTask`` (with its ``prune_level``, side weights, ...), not the base.
        """
        if isinstance(checkpoint_path, str | Path):
            hparams = load_checkpoint_file(checkpoint_path).get("hyper_parameters", {})
            target = find_task_class(hparams, SegmentationTask)
            if target is not cls and issubclass(target, cls):
                return target.load_from_checkpoint(checkpoint_path, *args, **kwargs)
            if "defaults_version" not in hparams:  # written before the key: first-round nets
                kwargs.setdefault("defaults_version", 1)
        kwargs.setdefault("weights_only", True)
        with architecture_only():  # the checkpoint holds the weights: no pretrained file needed
            return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    # ----------------------------------------------------------------- configuration hooks
    @property
    def metric_classes(self) -> int:
        """Classes the metrics score (binary counts background and foreground)."""
        return 2 if self.hparams.task == "binary" else self.hparams.num_classes

    @property
    def class_names(self) -> list[str]:
        """Class names of the metrics, from config or ``class_i``."""
        names = self.hparams.class_names
        if names and len(names) == self.metric_classes:
            return list(names)
        if self.hparams.task == "binary":
            return ["background", "foreground"]
        return [f"class_{i}" for i in range(self.metric_classes)]

    def configure_models(self) -> None:
        """Builds ``self.model`` from the primitives in ``hparams``."""
        h = self.hparams
        self.model: nn.Module = create_model(
            h.model,
            h.num_classes,
            h.encoder_name,
            h.in_channels,
            defaults_version=h.get("defaults_version", 1),
            **(h.model_kwargs or {}),
        )
        if h.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def configure_losses(self) -> None:
        """Builds ``self.criterion`` (a :class:`SegLoss`)."""
        h = self.hparams
        terms = h.loss or {"ce": 1.0}
        self.criterion = SegLoss(
            terms,
            h.task,
            h.num_classes,
            h.ignore_index,
            h.class_weights,
            h.batch_dice,
            h.loss_kwargs,
        )

    def configure_metrics(self) -> None:
        """Builds the validation and test metric collections."""
        h, k = self.hparams, self.metric_classes
        self.val_metrics = SegMetrics(k, h.task, h.ignore_index, self.class_names)
        self.test_metrics = SegMetrics(k, h.task, h.ignore_index, self.class_names)
        self.volume_scores = None
        if h.volumetric:
            from seglab.tasks.volumetric import VolumeScores

            self.volume_scores = VolumeScores(h.volume_classes, h.lcc)

    @property
    def per_case_scores(self) -> dict[str, Any]:
        """Per-patient scores of the last volumetric evaluation (for ``summary.json``)."""
        return self.volume_scores.per_case if self.volume_scores is not None else {}

    # ----------------------------------------------------------------------- family hooks
    def forward(self, x: torch.Tensor) -> torch.Tensor | ModelOutput:
        """Runs the model: logits in eval mode, possibly a ``ModelOutput`` in train mode."""
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def compute_loss(
        self, output: torch.Tensor | ModelOutput, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss of a training batch; families add side, auxiliary and classification terms."""
        loss, parts = self.criterion(main_logits(output), batch["mask"], batch.get("weight"))
        return loss, {f"loss/{k}": v for k, v in parts.items()}

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation logits ``(B, C, H, W)``, with the ``tta`` / ``sliding_window`` options."""
        h = self.hparams
        if not self.training and (h.get("tta") or h.get("sliding_window")):
            return infer(self.model, x, h.get("tta"), h.get("sliding_window"))
        return main_logits(self(x))

    def extra_eval(self, stage: str, logits: torch.Tensor, batch: dict[str, Any]) -> None:
        """Called on every validation/test batch after the metrics; families extend it."""
        if self.volume_scores is not None and not self.trainer.sanity_checking:
            self.volume_scores.update(stage, decide(logits, self.hparams.task), batch)

    def extra_eval_epoch_end(self, stage: str) -> dict[str, float]:
        """Extra epoch metrics (volumetric scores) logged as ``<stage>/<key>``."""
        if self.volume_scores is None or self.trainer.sanity_checking:
            return {}
        return self.volume_scores.compute(stage)

    # ------------------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        output = self(batch["image"])
        loss, parts = self.compute_loss(output, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"Non-finite training loss ({loss.item()}) at epoch {self.current_epoch}, "
                f"global step {self.global_step} (batch {batch_idx}); stopping. The last good "
                "checkpoint is kept untouched. Lower the learning rate, check the inputs for "
                "NaN/Inf, or try precision=32."
            )
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=bs)
        return loss

    def _eval_step(self, stage: str, batch: dict[str, Any]) -> torch.Tensor:
        logits = self.predict_logits(batch["image"])
        bs = batch["image"].shape[0]
        if "mask" in batch:
            loss, _ = self.criterion(logits, batch["mask"])
            self.log(f"{stage}/loss", loss, batch_size=bs, sync_dist=True)
            metrics = self.val_metrics if stage == "val" else self.test_metrics
            metrics.update(decide(logits, self.hparams.task), batch["mask"])
        self.extra_eval(stage, logits, batch)
        return logits

    def _eval_epoch_end(self, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        values = {f"{stage}/{k}": v for k, v in metrics.compute().items()}
        values |= {f"{stage}/{k}": v for k, v in self.extra_eval_epoch_end(stage).items()}
        shown = {f"{stage}/mIoU", f"{stage}/dice"}
        # Values are already exact across processes (summed confusion matrices).
        self.log_dict(
            {k: v for k, v in values.items() if k in shown}, prog_bar=True, sync_dist=True
        )
        self.log_dict({k: v for k, v in values.items() if k not in shown}, sync_dist=True)
        metrics.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        logits = self.predict_logits(batch["image"])
        return {"pred": decide(logits, self.hparams.task), "meta": batch.get("meta", {})}

    # ---------------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, self.trainer.max_epochs or 1)
        return build_optimizer(self.named_parameters(), self.hparams, total, epochs)

    def configure_callbacks(self) -> list[L.Callback]:
        """Encoder freezing, frozen BatchNorm and the weights record (``seglab.tasks.finetune``)."""
        h = self.hparams
        return [FineTuning(h.get("freeze_encoder_epochs", 0), h.get("freeze_bn", False))]
