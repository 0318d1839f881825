"""Which task class a checkpoint names, among the classes seglab has imported."""

from __future__ import annotations

from typing import Any


def find_task_class(hparams: dict[str, Any], root: type) -> type:
    """The task class a checkpoint was trained with (LightningCLI's ``_class_path``).

    ``SegmentationTask.load_from_checkpoint`` alone would build the base class for a
    ``UNetFamilyTask`` checkpoint: Lightning drops ``_class_path`` because the base ``__init__``
    takes no ``**kwargs``, and with it the family's own arguments (``prune_level``, ...). Only
    classes already imported under ``seglab.tasks`` are accepted, never an arbitrary import.
    """
    path = hparams.get("_class_path") or f"seglab.tasks.{root.__name__}"
    candidates = {root, *_subclasses(root)}
    for cls in candidates:
        names = {f"{cls.__module__}.{cls.__qualname__}"}
        if cls.__module__.startswith("seglab.tasks."):
            names.add(f"seglab.tasks.{cls.__name__}")
        if path in names:
            return cls
    raise ValueError(
        f"The checkpoint was trained with task class {path!r}, which is not a seglab task "
        "imported in this process; import its module first."
    )


def _subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub, *_subclasses(sub)}
    return out
