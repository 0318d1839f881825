"""Guards: callbacks that stop a run early, with a message, instead of training on bad input.

* :class:`DataCompatibility` compares the task with the data before the first step: class count,
  ignore index, image channels and the smallest input side the encoder can take. During the run
  it checks every batch's labels and image size, so a bad file stops the run with its name and
  not with an index error from inside the loss.
* :class:`FiniteWeightsGuard` refuses to write a checkpoint whose weights hold NaN or Inf, so the
  last good ``last.ckpt`` survives a diverged run. A non-finite *loss* already stops the run in
  ``SegmentationTask.training_step`` before any weight changes; Lightning's ``ModelCheckpoint``
  does not save on an exception unless ``save_on_exception=True``, which this guard switches off
  for a ``FloatingPointError``.

:func:`default_guards` returns both, for the trainer's callback list.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from seglab.data.checks import too_small_fix, too_small_problem  # noqa: F401
from seglab.data.checks.scan import raise_scan_problems, scan_datamodule

DEFAULT_MIN_SIZE = 32  # when a model does not describe its encoder


def min_input_size(model: torch.nn.Module) -> int:
    """The smallest input side the model takes: the total stride of its deepest feature map.

    Reads ``model.encoder.reductions`` (the encoder contract); ``DEFAULT_MIN_SIZE`` otherwise.
    """
    encoder = getattr(model, "encoder", None)
    reductions = getattr(encoder, "reductions", None)
    if reductions:
        return int(max(reductions))
    stride = getattr(encoder, "output_stride", None)
    return int(stride) if stride else DEFAULT_MIN_SIZE


def expected_data_classes(task: str, num_classes: int) -> int:
    """Classes the masks should hold for a task: 2 (background, foreground) for ``binary``."""
    return 2 if task == "binary" else int(num_classes)


def too_small_message(where: str, height: int, width: int, min_size: int) -> str:
    """The message for an input smaller than the encoder's total stride."""
    return f"{too_small_problem(where, height, width, min_size)} Fix: {too_small_fix(min_size)}"


def _hparam(task: L.LightningModule, key: str, default: Any = None) -> Any:
    hparams = getattr(task, "hparams", {})
    return hparams.get(key, default) if isinstance(hparams, Mapping) else default


def check_data_compatibility(
    task: L.LightningModule, datamodule: Any, splits=None, strict_classes: bool = False
) -> None:
    """Raises ``ValueError`` when the task and the data do not fit together.

    Checks the class count (``num_classes`` of the task against the reader's ``num_classes``), the
    ignore index, the image channels of the first item of each split and the input size against
    the encoder's total stride. A data set with more classes than the model is an error; a model
    with more classes than the data set only warns (it trains, some classes are never seen),
    unless ``strict_classes``.

    Args:
        task: A ``SegmentationTask`` (anything with ``hparams.num_classes``, ``task``, ...).
        datamodule: A set-up ``SegDataModule`` (``datasets`` and ``info``).
        splits: Dataset keys to sample (default: all that are set up).
        strict_classes: Refuse any class-count difference.
    """
    h_classes = _hparam(task, "num_classes")
    h_task = _hparam(task, "task", "multiclass")
    info = getattr(datamodule, "info", None) or {}
    data_classes = info.get("num_classes")
    if h_classes is not None and data_classes is not None:
        want = expected_data_classes(h_task, h_classes)
        if h_task == "binary" and data_classes in (1, 2):
            pass
        elif int(data_classes) != want:
            if h_task == "binary":
                fix = (
                    f"use task: multiclass with num_classes: {data_classes}, or map the labels to "
                    "0/1 (data.dataset_kwargs.mask_map)."
                )
            else:
                fix = (
                    f"set model.init_args.num_classes: {data_classes} (or data.dataset_kwargs."
                    f"num_classes: {h_classes} if the data description is the wrong one)."
                )
            message = (
                f"The model predicts {h_classes} class(es) (task={h_task!r}, so masks must hold "
                f"{want} classes) but the data set has num_classes={data_classes}. Fix: {fix}"
            )
            if int(data_classes) > want or strict_classes:
                raise ValueError(message)
            # more model classes than data classes trains, with some classes never seen
            warnings.warn(message, UserWarning, stacklevel=2)
    h_ignore = _hparam(task, "ignore_index")
    data_ignore = info.get("ignore_index")
    if data_ignore is not None and h_ignore is None:
        raise ValueError(
            f"The data set marks pixels to ignore with {data_ignore}, but model.init_args."
            f"ignore_index is not set, so the loss would treat {data_ignore} as a class. Fix: set "
            f"model.init_args.ignore_index: {data_ignore}."
        )
    if data_ignore is not None and h_ignore is not None and int(data_ignore) != int(h_ignore):
        raise ValueError(
            f"The data set marks ignored pixels with {data_ignore} but model.init_args."
            f"ignore_index is {h_ignore}. Fix: set both to the same value."
        )
    datasets = getattr(datamodule, "datasets", {}) or {}
    model = getattr(task, "model", None)
    min_size = min_input_size(model) if model is not None else None
    in_channels = _hparam(task, "in_channels")
    for split in splits or list(datasets):
        ds = datasets.get(split)
        if ds is None or len(ds) == 0:
            continue
        item = ds[0]
        image = item["image"]
        name = item.get("meta", {}).get("name", 0)
        where = f"The first {split} image ({name})"
        if in_channels is not None and image.shape[0] != in_channels:
            raise ValueError(
                f"{where} has {image.shape[0]} channel(s) but the model expects "
                f"model.init_args.in_channels={in_channels}. Fix: set model.init_args.in_channels: "
                f"{image.shape[0]}, or convert the images (folder data: data.dataset_kwargs."
                f"channels: {in_channels} converts greyscale <-> RGB by rule)."
            )
        if min_size is not None and min(image.shape[-2:]) < min_size:
            raise ValueError(too_small_message(where, *image.shape[-2:], min_size))


def check_batch_labels(
    batch: Mapping[str, Any], num_classes: int, ignore_index: int | None, task: str = "multiclass"
) -> None:
    """Raises ``ValueError`` naming the items whose mask values are out of range.

    Cheap when all is well (one min and one max over the batch's masks).
    """
    mask = batch.get("mask")
    if mask is None or not torch.is_tensor(mask) or mask.numel() == 0:
        return
    k = 2 if task in ("binary", "multilabel") else int(num_classes)
    valid = mask if ignore_index is None else mask[mask != ignore_index]
    if valid.numel() == 0 or (valid.min() >= 0 and valid.max() < k):
        return
    names = (batch.get("meta") or {}).get("name")
    lines = []
    for i in range(mask.shape[0]):
        m = mask[i]
        if ignore_index is not None:
            m = m[m != ignore_index]
        bad = torch.unique(m[(m < 0) | (m >= k)]).tolist()
        if bad:
            name = names[i] if names is not None and i < len(names) else f"item {i}"
            lines.append(f"{name}: values {bad[:10]}")
    raise ValueError(
        f"Mask values outside [0, {k}) that are not the ignore index ({ignore_index}): "
        f"{'; '.join(lines)}. Fix: set model.init_args.num_classes to cover them, set "
        "model.init_args.ignore_index, or remap the values (data.dataset_kwargs.mask_map). "
        "`seglab check-data --config ...` lists every such file."
    )


class DataCompatibility(Callback):
    """Checks task against data before the first step, and every batch's labels and size.

    At setup it also scans every file of every split (:func:`seglab.data.checks.scan.
    scan_dataset`: headers, sizes, formats, PNG checksums), so a corrupt file, a lossy mask, an
    EXIF-rotated image or images of mixed sizes stop the run before its first step.

    Args:
        check_batches: Also check each batch's mask values and image size (cheap).
        strict_classes: Also refuse a model with more classes than the data set (default: warn).
        scan_files: Scan every file of each split at setup.
    """

    def __init__(
        self, check_batches: bool = True, strict_classes: bool = False, scan_files: bool = True
    ) -> None:
        self.check_batches, self.strict_classes = check_batches, strict_classes
        self.scan_files = scan_files
        self._min_size: int | None = None
        self._scanned: set[int] = set()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dm = trainer.datamodule
        model = getattr(pl_module, "model", None)
        self._min_size = min_input_size(model) if model is not None else None
        if dm is not None and hasattr(dm, "datasets"):
            if self.scan_files:  # every file of every split, before the first step
                raise_scan_problems(scan_datamodule(dm, self._min_size, self._scanned))
            check_data_compatibility(pl_module, dm, strict_classes=self.strict_classes)

    def _check(self, pl_module: L.LightningModule, batch: Any) -> None:
        if not self.check_batches or not isinstance(batch, Mapping):
            return
        image = batch.get("image")
        if self._min_size is not None and torch.is_tensor(image) and image.ndim >= 3:
            h, w = image.shape[-2:]
            if min(h, w) < self._min_size:
                names = (batch.get("meta") or {}).get("name")
                where = f"A batch input ({', '.join(map(str, names[:3]))})" if names else "An input"
                raise ValueError(too_small_message(where, h, w, self._min_size))
        task = _hparam(pl_module, "task", "multiclass")
        if task != "multilabel" and _hparam(pl_module, "num_classes") is not None:
            check_batch_labels(
                batch, _hparam(pl_module, "num_classes"), _hparam(pl_module, "ignore_index"), task
            )

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._check(pl_module, batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._check(pl_module, batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._check(pl_module, batch)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._check(pl_module, batch)


def first_non_finite(state: Mapping[str, Any]) -> str | None:
    """Name of the first floating-point tensor in a state dict holding NaN or Inf, or None."""
    for name, value in state.items():
        if torch.is_tensor(value) and value.is_floating_point():
            if not bool(torch.isfinite(value).all()):
                return name
    return None


class FiniteWeightsGuard(Callback):
    """Stops the run instead of writing a checkpoint with NaN/Inf weights.

    Runs in ``on_save_checkpoint`` (before any file is opened, for every checkpoint: best, last,
    manual), and before each validation so a diverged epoch is not even evaluated. On a
    ``FloatingPointError`` (the task's non-finite loss) it switches off ``save_on_exception`` of
    the checkpoint callbacks, so the failing state never replaces the last good checkpoint.

    Args:
        every_n_steps: Also check the weights after every n-th optimiser step (0: off).
    """

    def __init__(self, every_n_steps: int = 0) -> None:
        self.every_n_steps = every_n_steps

    @staticmethod
    def _raise(trainer: L.Trainer, name: str, when: str) -> None:
        last = None
        for cb in trainer.checkpoint_callbacks:
            last = getattr(cb, "last_model_path", None) or getattr(cb, "best_model_path", None)
            if last:
                break
        kept = f" The last good checkpoint is kept untouched ({last})." if last else ""
        raise FloatingPointError(
            f"Non-finite weights (NaN/Inf in {name}) {when}, at epoch {trainer.current_epoch}, "
            f"global step {trainer.global_step}; stopping without writing a checkpoint.{kept} "
            "Lower the learning rate, add gradient clipping (trainer.gradient_clip_val), check "
            "the inputs for NaN/Inf, or train in precision 32."
        )

    def _check_module(self, trainer: L.Trainer, pl_module: L.LightningModule, when: str) -> None:
        name = first_non_finite(pl_module.state_dict())
        if name is not None:
            self._raise(trainer, name, when)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = self.every_n_steps
        if n and trainer.global_step % n == 0:
            self._check_module(trainer, pl_module, "after an optimiser step")

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._check_module(trainer, pl_module, "before validation")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        name = first_non_finite(checkpoint.get("state_dict", {}))
        if name is not None:
            self._raise(trainer, name, "in the checkpoint about to be written")

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, FloatingPointError):
            for cb in trainer.checkpoint_callbacks:
                if isinstance(cb, ModelCheckpoint):
                    cb.save_on_exception = False


def default_guards() -> list[Callback]:
    """The guards every seglab run should have (added by the CLI)."""
    return [DataCompatibility(), FiniteWeightsGuard()]
