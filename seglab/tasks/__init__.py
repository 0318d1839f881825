"""LightningModules: one base with the steps, family tasks that add hooks."""

from seglab.tasks.base import SegmentationTask

__all__ = ["SegmentationTask"]
