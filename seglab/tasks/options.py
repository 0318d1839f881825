"""Checks of a task's options that refuse, before any step, settings that would train nothing."""

from __future__ import annotations

TASKS = ("binary", "multiclass", "multilabel")


def check_task(task: str, num_classes: int) -> None:
    """Refuses task / class-count combinations that silently train nothing."""
    if task not in TASKS:
        raise ValueError(f"model.task must be one of {TASKS}, got {task!r}.")
    if task == "multiclass" and num_classes == 1:
        raise ValueError(
            "num_classes=1 with task='multiclass' trains a constant (softmax over one channel). "
            "For one foreground class use task: binary with num_classes: 1 (sigmoid), or "
            "task: multiclass with num_classes: 2 (background + foreground)."
        )
    if task == "binary" and num_classes != 1:
        raise ValueError(
            f"task='binary' means one sigmoid channel, but num_classes={num_classes}. "
            "Set num_classes: 1, or use task: multiclass for several exclusive classes."
        )


def check_finetune(encoder_lr_mult: float, freeze_encoder_epochs: float) -> None:
    """Refuses fine-tuning settings that are errors rather than choices."""
    if encoder_lr_mult < 0:
        raise ValueError(f"encoder_lr_mult must be >= 0, got {encoder_lr_mult}.")
    if freeze_encoder_epochs < 0:
        raise ValueError(f"freeze_encoder_epochs must be >= 0, got {freeze_encoder_epochs}.")
