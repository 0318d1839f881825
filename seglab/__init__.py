"""seglab: classic semantic segmentation architectures on timm encoders, trained with Lightning.

Packages, bottom to top (imports flow upwards only; ``tests/test_layout.py`` enforces it):
``data``, ``models``, ``losses``, ``metrics``; ``tasks``; ``runs``, ``inference``, ``compare``;
``cli``. Module paths of the first layout (``seglab.speed``, ``seglab.data.volumes``, ...) stay
importable as aliases of their new homes, so configs and checkpoints that name them still work.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

#: Old module path -> new module path (the package regrouping of the second round).
MOVED_MODULES = {
    "seglab.config_base": "seglab.cli.config_base",
    "seglab.config_check": "seglab.cli.config_check",
    "seglab.config_keys": "seglab.cli.config_keys",
    "seglab.sweep": "seglab.cli.sweep",
    "seglab.model_cards": "seglab.models.cards",
    "seglab.checkpoint": "seglab.runs.checkpoint",
    "seglab.csv_logger": "seglab.runs.csv_logger",
    "seglab.guards": "seglab.runs.guards",
    "seglab.speed": "seglab.runs.speed",
    "seglab.wandb_logging": "seglab.runs.wandb_logging",
    "seglab.wandb_media": "seglab.runs.wandb_media",
    "seglab.export": "seglab.inference.export",
    "seglab.volume_writer": "seglab.inference.volume_writer",
    "seglab.io": "seglab.data.io",
    "seglab.data.readers": "seglab.data.datasets",
    "seglab.data.sample_checks": "seglab.data.checks",
    "seglab.data.ct_cache": "seglab.data.ct.cache",
    **{f"seglab.data.{m}": f"seglab.data.datasets.{m}" for m in (
        "base", "imageio", "folder", "synthetic", "voc", "cityscapes", "camvid", "ade20k")},
    **{f"seglab.data.{m}": f"seglab.data.ct.{m}" for m in (
        "volumes", "slices", "resample", "phantom")},
}  # fmt: skip


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old module path to the module at its new path (the same module object)."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102
        if fullname in MOVED_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):  # noqa: D102
        module = importlib.import_module(MOVED_MODULES[spec.name])
        sys.modules[spec.name] = module
        return module

    def exec_module(self, module):  # noqa: D102
        return None


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
