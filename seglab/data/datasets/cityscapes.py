"""Cityscapes (fine annotations), 19 evaluation classes.

Layout (``root`` is the folder holding both ``leftImg8bit/`` and ``gtFine/``)::

    leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

The ``*_gtFine_labelIds.png`` files hold the raw label ids (0..33). They are mapped to the 19
train ids with the official table from ``cityscapesscripts/helpers/labels.py`` through a 256-entry
lookup table; every other id (unlabeled, ego vehicle, ground, parking, rail track, guard rail,
bridge, tunnel, polegroup, caravan, trailer, and any value above 33) becomes 255 = ignore. Images
and labels are matched by the prefix ``<city>_<seq>_<frame>``; the ``*_gtFine_color.png`` and
``*_instanceIds.png`` files are not used.
(The public ``test`` labels are all "unlabeled", i.e. all 255 after mapping.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from seglab.data.datasets.base import register_dataset
from seglab.data.datasets.imageio import PairedReader, ensure_dir_exists, stems

CITYSCAPES_CLASSES = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
]

# labelId -> trainId for the 19 evaluated classes (cityscapesscripts labels.py).
ID_TO_TRAIN_ID = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}

IGNORE_INDEX = 255
LABEL_LUT = np.full(256, IGNORE_INDEX, dtype=np.int64)
for _id, _train_id in ID_TO_TRAIN_ID.items():
    LABEL_LUT[_id] = _train_id

_IMG_SUFFIX = "_leftImg8bit.png"
_LBL_SUFFIX = "_gtFine_labelIds.png"
_LAYOUT = """\
  <root>/leftImg8bit/{train,val,test}/<city>/<name>_leftImg8bit.png
  <root>/gtFine/{train,val,test}/<city>/<name>_gtFine_labelIds.png
  (from leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip)"""


def map_label_ids(label_ids: np.ndarray) -> np.ndarray:
    """Maps raw Cityscapes label ids (0..255) to train ids (0..18, 255 = ignore), int64."""
    if label_ids.size and (label_ids.min() < 0 or label_ids.max() > 255):
        raise ValueError(
            f"Cityscapes label ids must lie in 0..255, got {label_ids.min()}..{label_ids.max()}."
        )
    return LABEL_LUT[label_ids]


@register_dataset("cityscapes")
class Cityscapes(PairedReader):
    """Cityscapes fine-annotation reader: 19 train-id classes, ignore index 255.

    Args:
        root: Folder holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``train``, ``val`` or ``test``.
        transform: Albumentations pipeline (see :class:`SegDataset`).
        mean: Normalisation mean.
        std: Normalisation std.
    """

    dataset_name = "Cityscapes"
    num_classes = 19
    ignore_index = IGNORE_INDEX
    class_names = CITYSCAPES_CLASSES

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform=None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        super().__init__(transform=transform, mean=mean, std=std)
        self.split = split
        self.root = ensure_dir_exists(root, "Cityscapes", _LAYOUT)
        image_root = self.root / "leftImg8bit" / split
        label_root = self.root / "gtFine" / split
        for folder, zip_name in (
            (image_root, "leftImg8bit_trainvaltest.zip"),
            (label_root, "gtFine_trainvaltest.zip"),
        ):
            if not folder.is_dir():
                parent = folder.parent
                have = (
                    sorted(p.name for p in parent.iterdir() if p.is_dir())
                    if parent.is_dir()
                    else []
                )
                raise FileNotFoundError(
                    f"Cityscapes folder {folder} for split={split!r} does not exist "
                    f"(splits found in {parent}: {have or 'none'}).\nExpected layout:\n{_LAYOUT}\n"
                    f"Fix: extract {zip_name} into {self.root}, or choose an existing split."
                )
        self.samples: list[tuple[str, Path, Path]] = []
        for city in sorted(p.name for p in image_root.iterdir() if p.is_dir()):
            images = stems(image_root / city, _IMG_SUFFIX)
            labels = stems(label_root / city, _LBL_SUFFIX)
            for name in sorted(images):
                if name not in labels:
                    raise FileNotFoundError(
                        f"Cityscapes image {images[name]} has no label "
                        f"{label_root / city / (name + _LBL_SUFFIX)}. Fix: extract "
                        "gtFine_trainvaltest.zip completely (the *_gtFine_labelIds.png files), or "
                        "remove the image."
                    )
                self.samples.append((name, images[name], labels[name]))
        if not self.samples:
            raise FileNotFoundError(
                f"Cityscapes: no *{_IMG_SUFFIX} images found under {image_root}/<city>/.\n"
                f"Expected layout:\n{_LAYOUT}"
            )

    def map_labels(self, label: np.ndarray) -> np.ndarray:
        return map_label_ids(label)
