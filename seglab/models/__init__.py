"""Segmentation architectures: ``create_model(name, num_classes, ...)`` and ``list_models()``."""

from seglab.models.output import ModelOutput, main_logits
from seglab.models.registry import create_model, list_models, register

__all__ = ["ModelOutput", "create_model", "list_models", "main_logits", "register"]
