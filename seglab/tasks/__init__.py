"""LightningModules: one base with the steps, family tasks that add hooks."""

from seglab.tasks.base import SegmentationTask
from seglab.tasks.context import ContextTask
from seglab.tasks.unet_family import UNetFamilyTask

__all__ = ["ContextTask", "SegmentationTask", "UNetFamilyTask"]
