"""A training run's bookkeeping, as Lightning callbacks and plugins.

Holds the run folder ``runs/<experiment>/<time>/`` with its ``summary.json`` and mask writer
(``folder``), atomic and safe checkpoint I/O (``checkpoint``), the resumable CSV logger
(``csv_logger``), data and NaN guards (``guards``), speed switches and timers (``speed``) and
Weights & Biases logging and media (``wandb_logging``, ``wandb_media``), where validate / test /
predict write and what a failed start leaves (``placement``), overlays (``pictures``), the
confusion matrix and per-class table (``confusion``), plain progress lines and the filter of
known-harmless warnings (``progress``). May import data,
models, losses, metrics and tasks; never the CLI.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    """``seglab.runs.RunSummary`` and friends, as when ``seglab.runs`` was one module."""
    import importlib

    if not name.startswith("_"):
        folder = importlib.import_module("seglab.runs.folder")
        if hasattr(folder, name):
            return getattr(folder, name)
    raise AttributeError(f"module 'seglab.runs' has no attribute {name!r}")
