"""LightningModules: one base with the steps, family tasks that add hooks.

Holds ``SegmentationTask`` (``base``), its optimiser and schedule (``optim``), the context and
U-Net family tasks and volumetric scoring. May import data, models, losses and metrics; never
runs, inference or the CLI.
"""

from seglab.tasks.base import SegmentationTask
from seglab.tasks.context import ContextTask
from seglab.tasks.unet_family import UNetFamilyTask

__all__ = ["ContextTask", "SegmentationTask", "UNetFamilyTask"]
