"""ADE20K scene parsing (ADEChallengeData2016, the 150-class SceneParsing benchmark).

Layout (``root`` is ``ADEChallengeData2016/`` or the folder holding it)::

    images/{training,validation}/ADE_{train,val}_<n>.jpg
    annotations/{training,validation}/ADE_{train,val}_<n>.png

Annotations are greyscale PNGs: 0 = "other"/unlabelled, 1..150 the classes. As in mmseg's
``reduce_zero_label=True``, values are shifted to 0..149 and 0 becomes 255 = ignore (values above
150, which the benchmark never contains, also become 255). Split ``train`` reads ``training`` and
``val`` reads ``validation`` (the folder names are accepted too). Images and labels are matched by
file stem. Class names are the official 150 names (objectInfo150, mmseg order).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from seglab.data.datasets.base import register_dataset
from seglab.data.datasets.imageio import PairedReader, ensure_dir_exists, stems

# fmt: off
ADE20K_CLASSES = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
]
# fmt: on
assert len(ADE20K_CLASSES) == 150

IGNORE_INDEX = 255
LABEL_LUT = np.full(256, IGNORE_INDEX, dtype=np.int64)
LABEL_LUT[1:151] = np.arange(150)

SPLIT_FOLDERS = {
    "train": "training",
    "val": "validation",
    "training": "training",
    "validation": "validation",
}
_LAYOUT = """\
  <root>/  (= ADEChallengeData2016/, or the folder holding it)
      images/{training,validation}/<name>.jpg
      annotations/{training,validation}/<name>.png    0 = other (ignored), 1..150 = classes"""


def reduce_zero_label(labels: np.ndarray) -> np.ndarray:
    """0 -> 255 (ignore), 1..150 -> 0..149, anything above 150 -> 255; int64."""
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"ADE20K labels must lie in 0..255, got {labels.min()}..{labels.max()}.")
    return LABEL_LUT[labels]


@register_dataset("ade20k")
class ADE20K(PairedReader):
    """ADE20K (ADEChallengeData2016) reader: 150 classes, 0 -> ignore index 255.

    Args:
        root: ``ADEChallengeData2016/`` or the folder containing it.
        split: ``train`` (= ``training``) or ``val`` (= ``validation``).
        transform: Albumentations pipeline (see :class:`SegDataset`).
        mean: Normalisation mean.
        std: Normalisation std.
    """

    dataset_name = "ADE20K"
    num_classes = 150
    ignore_index = IGNORE_INDEX
    class_names = ADE20K_CLASSES

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform=None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        super().__init__(transform=transform, mean=mean, std=std)
        if split not in SPLIT_FOLDERS:
            raise ValueError(f"ADE20K split must be 'train' or 'val', got {split!r}.")
        self.split = split
        root_path = ensure_dir_exists(root, "ADE20K", _LAYOUT)
        if not (root_path / "images").is_dir() and (root_path / "ADEChallengeData2016").is_dir():
            root_path = root_path / "ADEChallengeData2016"
        self.root = root_path
        folder = SPLIT_FOLDERS[split]
        image_dir, label_dir = root_path / "images" / folder, root_path / "annotations" / folder
        for d in (image_dir, label_dir):
            if not d.is_dir():
                raise FileNotFoundError(
                    f"ADE20K folder {d} (split={split!r}) does not exist.\n"
                    f"Expected layout:\n{_LAYOUT}\n"
                    "Fix: extract ADEChallengeData2016.zip (SceneParsing benchmark) and pass the "
                    "ADEChallengeData2016 folder (or its parent) as root."
                )
        images = stems(image_dir, ".jpg")
        labels = stems(label_dir, ".png")
        if not images:
            raise FileNotFoundError(f"ADE20K: no .jpg images in {image_dir}.")
        self.samples: list[tuple[str, Path, Path]] = []
        for name in sorted(images):
            if name not in labels:
                raise FileNotFoundError(
                    f"ADE20K image {images[name]} has no label {label_dir / (name + '.png')}. "
                    "Fix: re-extract ADEChallengeData2016.zip or remove the image."
                )
            self.samples.append((name, images[name], labels[name]))

    def map_labels(self, label: np.ndarray) -> np.ndarray:
        return reduce_zero_label(label)
