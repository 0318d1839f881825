"""Imports every dataset reader module so that their ``@register_dataset`` runs."""

import importlib

_READER_MODULES = (
    "folder",
    "synthetic",
    "voc",
    "cityscapes",
    "camvid",
    "ade20k",
    "volumes",
    "slices",
)

for _mod in _READER_MODULES:
    try:
        importlib.import_module(f"seglab.data.{_mod}")
    except ModuleNotFoundError as _err:
        if _err.name != f"seglab.data.{_mod}":
            raise
