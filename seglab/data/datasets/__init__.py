"""Dataset readers: the ``SegDataset`` interface, its registry and the standard readers.

Holds ``base`` (the interface and ``register_dataset``), ``imageio`` (file helpers shared by the
readers), ``folder``, ``synthetic``, ``voc``, ``cityscapes``, ``camvid`` and ``ade20k``. The CT
readers register themselves from :mod:`seglab.data.ct`. May import ``seglab.data.io`` and third
party libraries only; nothing above the data layer.
"""

from __future__ import annotations

import importlib

READER_MODULES = (
    "seglab.data.datasets.folder",
    "seglab.data.datasets.synthetic",
    "seglab.data.datasets.voc",
    "seglab.data.datasets.cityscapes",
    "seglab.data.datasets.camvid",
    "seglab.data.datasets.ade20k",
    "seglab.data.ct.volumes",
    "seglab.data.ct.slices",
)


def load_all() -> None:
    """Imports every reader module so that their ``@register_dataset`` runs."""
    for name in READER_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
