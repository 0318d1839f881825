"""Which CT cases a folder holds: image and label files paired by name, nothing opened.

Layouts found under a root (searched recursively, so batch sub-folders are fine):

- LiTS 2017: ``volume-N.nii[.gz]`` with ``segmentation-N.nii[.gz]`` (same ``N``; they may sit
  in different sub-folders). Case id ``volume-N``.
- MSD Task03_Liver: ``imagesTr/liver_N.nii.gz`` with ``labelsTr/liver_N.nii.gz``. Case id
  ``liver_N``.
- nnU-Net raw: ``imagesTr/<case>_0000.nii.gz`` with ``labelsTr/<case>.nii.gz`` (the channel
  suffix ``_0000`` is dropped; CT has one channel, so ``_0001`` and above are refused).
  Case id ``<case>``.
- One folder per case: ``<case>/image.nii.gz`` with ``<case>/label.nii.gz`` (or ``img`` /
  ``seg`` / ``mask`` / ``segmentation`` / ``labels``). Case id: the folder name.
- Prediction input (``require_labels=False``): additionally every other NIfTI file (MSD
  ``imagesTs``, LiTS ``test-volume-N.nii``), with its file stem as case id.

macOS ``._*`` resource files and other hidden files are ignored.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

NII_RE = re.compile(r"^(?P<stem>.+?)\.nii(?:\.gz)?$")
LITS_IMAGE_RE = re.compile(r"^volume-(?P<n>\d+)\.nii(?:\.gz)?$")
LITS_LABEL_RE = re.compile(r"^segmentation-(?P<n>\d+)\.nii(?:\.gz)?$")
CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")  # nnU-Net's <case>_0000
PAIR_IMAGES = ("image", "img", "ct", "volume")
PAIR_LABELS = ("label", "labels", "seg", "segmentation", "mask")
LAYOUT_HELP = (
    "Expected the LiTS 2017 layout (volume-N.nii[.gz] with segmentation-N.nii[.gz]), the MSD "
    "Task03 / nnU-Net layout (imagesTr/<case>[_0000].nii.gz with labelsTr/<case>.nii.gz) or one "
    "folder per case (<case>/image.nii.gz with <case>/label.nii.gz)"
)


@dataclass(frozen=True)
class Case:
    """One CT scan: its id, image file and label file (None for an unlabelled scan)."""

    case_id: str
    image_path: Path
    label_path: Path | None


def _visible_niftis(root: Path) -> list[Path]:
    """``.nii``/``.nii.gz`` files under root, skipping hidden files/folders and ``._*`` files."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not NII_RE.match(name):
                continue
            out.append(Path(dirpath) / name)
    return out


def _natural_key(case_id: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", case_id))


def _more(ids: list[str]) -> str:
    return f" (and {len(ids) - 1} more case(s): {', '.join(ids[1:6])}...)" if len(ids) > 1 else ""


def _msd_image_id(path: Path, stem: str) -> str:
    """``liver_3`` for MSD's ``liver_3``, ``case_7`` for nnU-Net's ``case_7_0000``."""
    m = CHANNEL_RE.match(stem)
    if m is None:
        return stem
    if m["channel"] != "0000":
        raise ValueError(
            f"{path} is channel {m['channel']} of nnU-Net case {m['case']!r}; CT cases have one "
            "channel (<case>_0000.nii.gz). Remove the other channels or train on a copy without."
        )
    return m["case"]


def _classify(path: Path, require_labels: bool) -> tuple[str, str] | None:
    """``("image" | "label", case_id)`` of one file, or None when it is neither."""
    name, parent = path.name, path.parent.name
    stem = NII_RE.match(name)["stem"]
    if m := LITS_IMAGE_RE.match(name):
        return "image", f"volume-{int(m['n'])}"
    if m := LITS_LABEL_RE.match(name):
        return "label", f"volume-{int(m['n'])}"
    if parent == "imagesTr" or (parent == "imagesTs" and not require_labels):
        return "image", _msd_image_id(path, stem)
    if parent == "labelsTr":
        return "label", stem
    if stem.lower() in PAIR_IMAGES and parent:
        return "image", parent
    if stem.lower() in PAIR_LABELS and parent:
        return "label", parent
    if not require_labels:  # prediction input: any other NIfTI is a scan (test-volume-N)
        return "image", stem
    return None


def _expected_partner(path: Path, kind: str) -> str:
    """What the missing partner of ``path`` would be called (for the error message)."""
    name = path.name
    if kind == "label":
        if name.startswith("segmentation-"):
            return name.replace("segmentation-", "volume-")
        if path.parent.name == "labelsTr":
            return f"imagesTr/{name} or imagesTr/{NII_RE.match(name)['stem']}_0000.nii.gz"
        return f"{path.parent.name}/image.nii.gz"
    if name.startswith("volume-"):
        return name.replace("volume-", "segmentation-")
    if path.parent.name == "imagesTr":
        stem = CHANNEL_RE.sub(r"\g<case>", NII_RE.match(name)["stem"])
        return f"labelsTr/{stem}.nii.gz"
    return f"{path.parent.name}/label.nii.gz"


def find_cases(root: str | os.PathLike, require_labels: bool = True) -> list[Case]:
    """Lists the CT cases under ``root`` (see the module docstring), sorted by id.

    Only file names are read here (no NIfTI is opened); shape and affine are checked on load.

    Args:
        root: Data folder.
        require_labels: Whether every image needs a label file. False (prediction) also lists
            every other NIfTI file as an unlabelled scan.

    Returns:
        The cases, in natural order of their ids (``volume-2`` before ``volume-10``).

    Raises:
        FileNotFoundError: ``root`` does not exist or holds no CT volume.
        ValueError: An image has no label (with ``require_labels``), a label has no image, or
            two files claim the same case id.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"CT data root {root} does not exist or is not a folder. Pass --data.root pointing at "
            f"the CT data. {LAYOUT_HELP}."
        )
    tables: dict[str, dict[str, Path]] = {"image": {}, "label": {}}
    for path in _visible_niftis(root):
        found = _classify(path, require_labels)
        if found is None:
            continue
        kind, key = found
        table = tables[kind]
        if key in table:
            raise ValueError(
                f"Case {key!r} appears twice: {table[key]} and {path}. Remove one of the two "
                "copies from the data root."
            )
        table[key] = path
    images, labels = tables["image"], tables["label"]
    if not images and not labels:
        raise FileNotFoundError(f"No CT volumes found under {root}. {LAYOUT_HELP}.")
    orphans = sorted(set(labels) - set(images), key=_natural_key)
    if orphans:
        lab = labels[orphans[0]]
        raise ValueError(
            f"Label file {lab} has no image ({_expected_partner(lab, 'label')} is missing)"
            f"{_more(orphans)}. Add the image or remove the label file."
        )
    if require_labels:
        missing = sorted(set(images) - set(labels), key=_natural_key)
        if missing:
            img = images[missing[0]]
            raise ValueError(
                f"Image file {img} has no label ({_expected_partner(img, 'image')} is missing)"
                f"{_more(missing)}. Add the label file, or move the image out of the training "
                "data root (unlabelled scans belong in the prediction input)."
            )
    return [Case(cid, images[cid], labels.get(cid)) for cid in sorted(images, key=_natural_key)]
