"""Pascal VOC 2012 semantic segmentation (optionally with the SBD "aug" training set).

Layout (``root`` may be the folder holding ``VOCdevkit/``, ``VOCdevkit`` itself, or the
``VOC2012`` folder itself)::

    VOCdevkit/VOC2012/
        JPEGImages/<id>.jpg
        SegmentationClass/<id>.png          palette PNG: indices 0..20 are class ids, 255 = boundary
        SegmentationClassAug/<id>.png       (optional, SBD) greyscale index PNG, same convention
        ImageSets/Segmentation/{train,val,trainval}.txt
        ImageSets/Segmentation/train_aug.txt  (or VOC2012/train_aug.txt)

Splits: any ``<split>`` with a list file ``ImageSets/Segmentation/<split>.txt`` (``train``, ``val``,
``trainval``, ...). A split whose name ends in ``_aug`` (``train_aug``, ``trainval_aug``) reads its
labels from ``SegmentationClassAug/``; its list is looked up in ``ImageSets/Segmentation/`` first,
then directly in the ``VOC2012`` folder (where the DeepLab-distributed ``train_aug.txt`` often
lands). List lines may be plain ids (``2007_000032``) or DeepLab-style path pairs
(``/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png``); the stem of the first
token is the id. Blank lines and ``#`` comments are skipped.

Labels are read as indices (the palette colours are ignored): 0 = background, 1..20 the object
classes, 255 = object boundary / "difficult", ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

from seglab.data.datasets.base import register_dataset
from seglab.data.datasets.imageio import PairedReader, ensure_dir_exists, stems

VOC_CLASSES = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]

_LAYOUT = """\
  <root>/VOCdevkit/VOC2012/   (or <root> itself = the VOC2012 folder)
      JPEGImages/<id>.jpg
      SegmentationClass/<id>.png            (palette PNGs, 0..20 + 255)
      SegmentationClassAug/<id>.png         (optional, SBD augmented labels for *_aug splits)
      ImageSets/Segmentation/{train,val,trainval}.txt  (+ train_aug.txt for split='train_aug')"""


def _find_voc2012(root: Path) -> Path:
    for cand in (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root):
        if (cand / "JPEGImages").is_dir():
            return cand
    raise FileNotFoundError(
        f"Pascal VOC root {str(root)!r} exists but no JPEGImages/ folder was found in "
        f"{root / 'VOCdevkit' / 'VOC2012'}, {root / 'VOC2012'} or {root}.\n"
        f"Expected layout:\n{_LAYOUT}\n"
        "Fix: extract VOCtrainval_11-May-2012.tar into root (it creates VOCdevkit/VOC2012/), or "
        "pass the VOC2012 folder itself as root."
    )


def _read_list(path: Path) -> list[str]:
    ids = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        ids.append(Path(line.split()[0]).stem)
    return ids


@register_dataset("voc")
class VOCSegmentation(PairedReader):
    """Pascal VOC 2012 segmentation reader: 21 classes, ignore index 255.

    Args:
        root: Folder holding ``VOCdevkit/VOC2012``, or the ``VOC2012`` folder itself.
        split: ``train``, ``val``, ``trainval`` or any other list in ``ImageSets/Segmentation``;
            ``train_aug`` (any ``*_aug``) uses the SBD labels in ``SegmentationClassAug``.
        transform: Albumentations pipeline (see :class:`SegDataset`).
        mean: Normalisation mean.
        std: Normalisation std.
    """

    dataset_name = "Pascal VOC"
    num_classes = 21
    ignore_index = 255
    class_names = VOC_CLASSES

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
        self.voc = _find_voc2012(ensure_dir_exists(root, "Pascal VOC 2012", _LAYOUT))
        aug = split.endswith("_aug")
        label_dir = self.voc / ("SegmentationClassAug" if aug else "SegmentationClass")
        list_dir = self.voc / "ImageSets" / "Segmentation"
        candidates = [list_dir / f"{split}.txt"] + ([self.voc / f"{split}.txt"] if aug else [])
        list_file = next((c for c in candidates if c.is_file()), None)
        if list_file is None:
            available = sorted(p.stem for p in list_dir.glob("*.txt")) if list_dir.is_dir() else []
            fix = (
                "download the SBD augmented set (SegmentationClassAug + train_aug.txt, as "
                "distributed with DeepLab) and put train_aug.txt in ImageSets/Segmentation/"
                if aug
                else "use one of the available splits or restore the list file"
            )
            raise FileNotFoundError(
                f"Pascal VOC split list for split={split!r} not found; looked for "
                f"{', '.join(str(c) for c in candidates)}. Available lists: {available or 'none'}. "
                f"Fix: {fix}."
            )
        if not label_dir.is_dir():
            raise FileNotFoundError(
                f"Pascal VOC label folder {label_dir} does not exist (needed for split={split!r}). "
                + (
                    "Fix: extract SegmentationClassAug (SBD labels as index PNGs) into the "
                    "VOC2012 folder."
                    if aug
                    else "Fix: re-extract VOCtrainval_11-May-2012.tar."
                )
            )
        self.list_file = list_file
        self.ids = _read_list(list_file)
        images = stems(self.voc / "JPEGImages", ".jpg")
        labels = stems(label_dir, ".png")
        for i in self.ids:
            if i not in images:
                raise FileNotFoundError(
                    f"Pascal VOC: id {i!r} listed in {list_file} has no image "
                    f"{self.voc / 'JPEGImages' / (i + '.jpg')}. Fix: restore the image or remove "
                    "the id from the list."
                )
            if i not in labels:
                raise FileNotFoundError(
                    f"Pascal VOC: image {images[i]} (listed in {list_file}) has no label "
                    f"{label_dir / (i + '.png')}. Fix: restore the label PNG or remove the id "
                    "from the list."
                )
        self.samples = [(i, images[i], labels[i]) for i in self.ids]
