"""The config keys seglab accepts, read from the signatures they are passed to.

Trainer, the task class named by ``model.class_path``, ``SegDataModule``, the dataset reader, the
model builder and the CLI's ``run.*`` options each give a set of valid names; :func:`closest`
suggests the nearest valid name for a misspelt one (``difflib``, plus common synonyms from other
code bases such as ``learning_rate`` -> ``lr``). Used by :mod:`seglab.cli.config_check`.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Iterable
from typing import Any

SUBCOMMANDS = ("fit", "validate", "test", "predict")
# Keys LightningCLI adds itself at the top of every subcommand (besides the method's arguments).
CLI_TOP = ("config", "print_config", "help", "seed_everything", "trainer", "model", "data")
# ``base:`` (seglab.cli.config_base) is expanded before LightningCLI sees a file.
FILE_ONLY_TOP = ("base",)
# Common names from other code bases -> seglab's name.
SYNONYMS = {
    "learning_rate": "lr",
    "base_lr": "lr",
    "epochs": "max_epochs",
    "n_epochs": "max_epochs",
    "num_epochs": "max_epochs",
    "steps": "max_steps",
    "gpus": "devices",
    "n_classes": "num_classes",
    "nclasses": "num_classes",
    "classes": "num_classes",
    "out_channels": "num_classes",
    "workers": "num_workers",
    "n_workers": "num_workers",
    "in_chans": "in_channels",
    "encoder": "encoder_name",
    "backbone": "encoder_name",
    "arch": "model",
    "architecture": "model",
    "dataset_name": "dataset",
    "data_root": "root",
    "data_dir": "root",
    "transforms": "train_transforms",
    "augmentations": "train_transforms",
}


# ------------------------------------------------------------------------- valid names
def _params(fn: Callable, skip: Iterable[str] = ()) -> tuple[set[str], bool]:
    """Parameter names of ``fn`` and whether it takes ``**kwargs``."""
    sig = inspect.signature(fn)
    names = {
        n
        for n, p in sig.parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n != "self"
    }
    varkw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    return names - set(skip), varkw


def _class_params(cls: type, stop: type | None = None) -> set[str] | None:
    """``__init__`` names of a class, following ``**kwargs`` up the MRO; None if open-ended."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        if stop is not None and klass is stop:
            return names
        own, varkw = _params(klass.__init__)
        names |= own
        if not varkw:
            return names
    return None


def top_level_keys(subcommand: str = "fit") -> set[str]:
    """Top-level keys of a LightningCLI subcommand in seglab."""
    from lightning.pytorch import Trainer

    method = getattr(Trainer, subcommand if subcommand in SUBCOMMANDS else "fit")
    own, _ = _params(
        method,
        skip=("model", "train_dataloaders", "val_dataloaders", "dataloaders", "datamodule"),
    )
    return set(CLI_TOP) | set(FILE_ONLY_TOP) | own | {"run"}


def trainer_keys() -> set[str]:
    from lightning.pytorch import Trainer

    return _params(Trainer.__init__)[0]


def run_keys() -> set[str]:
    """The ``run.*`` options that :func:`seglab.cli.run_args.add_run_arguments` declares."""
    from seglab.cli.run_args import add_run_arguments

    class Recorder:
        def __init__(self) -> None:
            self.names: set[str] = set()

        def add_argument(self, *names: str, **kwargs: Any) -> None:
            for n in names:
                if n.startswith("--run."):
                    self.names.add(n[len("--run.") :])

        def __getattr__(self, name: str) -> Callable[..., None]:
            return lambda *a, **k: None

    rec = Recorder()
    add_run_arguments(rec)
    return rec.names


def datamodule_keys() -> set[str]:
    from seglab.data.datamodule import SegDataModule

    return _params(SegDataModule.__init__)[0]


def reader_keys(dataset: str) -> set[str] | None:
    """Keys ``data.dataset_kwargs`` may hold for a reader; None when unknown or open-ended."""
    from seglab.data.datasets.base import SegDataset, get_dataset_class

    try:
        cls = get_dataset_class(dataset)
    except ValueError:
        return None  # the datamodule reports the unknown dataset name itself
    names = _class_params(cls, stop=None)
    if names is None:
        return None
    base, _ = _params(SegDataset.__init__)
    return (names | base) - {"transform"}


def task_class(model_cfg: Any) -> type | None:
    """The task class named by ``model.class_path`` (only inside seglab), default the base."""
    from seglab.tasks.base import SegmentationTask

    path = model_cfg.get("class_path") if isinstance(model_cfg, dict) else None
    if isinstance(model_cfg, str):
        path = model_cfg
    if not path:
        return SegmentationTask
    if "." not in path:
        tasks = importlib.import_module("seglab.tasks")
        return getattr(tasks, path, None)
    module, _, name = path.rpartition(".")
    if module != "seglab" and not module.startswith("seglab."):
        return None
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def task_keys(cls: type) -> set[str] | None:
    import lightning as L

    return _class_params(cls, stop=L.LightningModule)


def builder_keys(model_name: str) -> set[str] | None:
    """Keys ``model_kwargs`` may hold for an architecture; None when unknown or open-ended."""
    from seglab.models import registry

    registry._load_all()
    fn = registry._BUILDERS.get(model_name)
    if fn is None:
        return None
    names, varkw = _params(fn, skip=("num_classes", "encoder_name", "in_channels"))
    return None if varkw else names


def closest(key: str, valid: Iterable[str]) -> list[str]:
    """Valid names closest to ``key`` (difflib, then synonyms), best first."""
    valid = set(valid)
    pool = valid | {s for s, t in SYNONYMS.items() if t in valid}
    out = []
    for cand in difflib.get_close_matches(key, pool, n=3, cutoff=0.6):
        name = SYNONYMS.get(cand, cand) if cand not in valid else cand
        if name not in out:
            out.append(name)
    prefixed = [v for v in valid if v.startswith(key) or key.startswith(v)]
    if len(prefixed) == 1 and prefixed[0] not in out:
        out.insert(0, prefixed[0])
    return out
