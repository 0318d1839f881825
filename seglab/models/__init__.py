"""Segmentation architectures: ``create_model(name, num_classes, ...)`` and ``list_models()``.

Holds the registry, the one timm encoder contract (``encoders``, the only timm import), shared
blocks and heads, one file per architecture, test-time augmentation and sliding-window inference
(``inference``) and the model cards of ``seglab models`` (``cards``). May import
``seglab.models.*`` and ``seglab.data.io`` (weights files); never tasks, runs or the CLI.
"""

from seglab.models.output import ModelOutput, main_logits
from seglab.models.registry import create_model, list_models, register

__all__ = ["ModelOutput", "create_model", "list_models", "main_logits", "register"]
