"""CT volumes on disk: case discovery (LiTS 2017, MSD Task03), loading and writing labels.

Layouts found under a root (searched recursively, so batch subfolders are fine):

- LiTS 2017: ``volume-N.nii[.gz]`` with ``segmentation-N.nii[.gz]`` (same ``N``; they may sit
  in different subfolders). Case id ``volume-N``.
- MSD Task03_Liver: ``imagesTr/liver_N.nii.gz`` with ``labelsTr/liver_N.nii.gz``. Case id
  ``liver_N``. macOS ``._*`` resource files and other hidden files are ignored.
- Prediction input (``require_labels=False``): additionally every other NIfTI file (MSD
  ``imagesTs``, LiTS ``test-volume-N.nii``), with its file stem as case id.

Orientation convention. Every volume is reoriented with ``nib.as_closest_canonical`` (RAS+:
array axes point to patient Right, Anterior, Superior) and then transposed to ``(z, y, x)``, so
``array[z]`` is an axial slice, ``z`` grows towards the head, rows (``y``) towards anterior and
columns (``x``) towards the patient's right. (Radiological display, anterior up and patient
right on the left, is this slice rotated by 180 degrees.) Spacing is ``(z, y, x)`` in mm from
the header zooms. :func:`write_label_volume` undoes the reorientation, so a written prediction
overlays the original image in any viewer.

Label volumes must match their image in shape and affine; a mismatch is an error naming both
files (LiTS labels are sometimes exported with a different header: fix the file, do not guess).
"""

from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from seglab.data.io import atomic_write, safe_child

NII_RE = re.compile(r"^(?P<stem>.+?)\.nii(?:\.gz)?$")
LITS_IMAGE_RE = re.compile(r"^volume-(?P<n>\d+)\.nii(?:\.gz)?$")
LITS_LABEL_RE = re.compile(r"^segmentation-(?P<n>\d+)\.nii(?:\.gz)?$")
AFFINE_ATOL = 1e-3  # mm: image/label affines closer than this are "the same"
LAYOUT_HELP = (
    "Expected the LiTS 2017 layout (volume-N.nii[.gz] with segmentation-N.nii[.gz]) or the MSD "
    "Task03 layout (imagesTr/liver_N.nii.gz with labelsTr/liver_N.nii.gz)"
)


@dataclass(frozen=True)
class Case:
    """One CT scan: its id, image file and label file (None for an unlabelled scan)."""

    case_id: str
    image_path: Path
    label_path: Path | None


@dataclass
class Volume:
    """A loaded case in the canonical ``(z, y, x)`` orientation.

    Attributes:
        case_id: Case id.
        image: ``(D, H, W)`` float32 Hounsfield units.
        label: ``(D, H, W)`` uint8 labels, or None for an unlabelled case.
        spacing: ``(z, y, x)`` voxel size in mm.
        affine: The original (not reoriented) affine of the image file.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    spacing: tuple[float, float, float]
    affine: np.ndarray


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


def find_cases(root: str | os.PathLike, require_labels: bool = True) -> list[Case]:
    """Lists the CT cases under ``root`` (LiTS 2017 or MSD Task03 layout), sorted by id.

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
            f"the LiTS / MSD Task03 data. {LAYOUT_HELP}."
        )
    images: dict[str, Path] = {}
    labels: dict[str, Path] = {}

    def put(table: dict[str, Path], key: str, path: Path) -> None:
        if key in table:
            raise ValueError(
                f"Case {key!r} appears twice: {table[key]} and {path}. Remove one of the two "
                "copies from the data root."
            )
        table[key] = path

    for path in _visible_niftis(root):
        name, parent = path.name, path.parent.name
        if m := LITS_IMAGE_RE.match(name):
            put(images, f"volume-{int(m['n'])}", path)
        elif m := LITS_LABEL_RE.match(name):
            put(labels, f"volume-{int(m['n'])}", path)
        elif parent == "imagesTr" or (parent == "imagesTs" and not require_labels):
            put(images, NII_RE.match(name)["stem"], path)
        elif parent == "labelsTr":
            put(labels, NII_RE.match(name)["stem"], path)
        elif not require_labels:  # prediction input: any other NIfTI is a scan (test-volume-N)
            put(images, NII_RE.match(name)["stem"], path)
    if not images and not labels:
        raise FileNotFoundError(f"No CT volumes found under {root}. {LAYOUT_HELP}.")
    orphans = sorted(set(labels) - set(images), key=_natural_key)
    if orphans:
        lab = labels[orphans[0]]
        want = (
            lab.name.replace("segmentation-", "volume-")
            if lab.name.startswith("segmentation-")
            else f"imagesTr/{lab.name}"
        )
        raise ValueError(
            f"Label file {lab} has no image ({want} is missing){_more(orphans)}. Add the image "
            "or remove the label file."
        )
    if require_labels:
        missing = sorted(set(images) - set(labels), key=_natural_key)
        if missing:
            img = images[missing[0]]
            want = (
                img.name.replace("volume-", "segmentation-")
                if img.name.startswith("volume-")
                else f"labelsTr/{img.name}"
            )
            raise ValueError(
                f"Image file {img} has no label ({want} is missing){_more(missing)}. Add the "
                "label file, or move the image out of the training data root (unlabelled scans "
                "belong in the prediction input)."
            )
    return [Case(cid, images[cid], labels.get(cid)) for cid in sorted(images, key=_natural_key)]


def _more(ids: list[str]) -> str:
    return f" (and {len(ids) - 1} more case(s): {', '.join(ids[1:6])}...)" if len(ids) > 1 else ""


def _squeeze3d(img: nib.Nifti1Image, path: Path) -> nib.Nifti1Image:
    if img.ndim == 3:
        return img
    if img.ndim > 3 and all(s == 1 for s in img.shape[3:]):
        return nib.squeeze_image(img)
    raise ValueError(
        f"{path} has shape {img.shape}; a 3D CT volume is expected. Export the scan as one 3D "
        "NIfTI file."
    )


def to_zyx(img: nib.spatialimages.SpatialImage, dtype=np.float32) -> tuple[np.ndarray, tuple]:
    """The canonical ``(z, y, x)`` array and ``(z, y, x)`` spacing in mm of a 3D image."""
    can = nib.as_closest_canonical(img)
    data = np.asanyarray(can.dataobj)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    zooms = can.header.get_zooms()[:3]
    spacing = tuple(round(float(zooms[i]), 6) for i in (2, 1, 0))  # header floats are float32
    return np.ascontiguousarray(data.transpose(2, 1, 0)), spacing


def load_case(case: Case) -> Volume:
    """Loads a case with nibabel in the canonical ``(z, y, x)`` orientation.

    Raises:
        ValueError: The label's shape or affine differs from the image's, or labels are not
            small non-negative integers.
    """
    img = _squeeze3d(nib.load(str(case.image_path)), case.image_path)
    lab_img = None
    if case.label_path is not None:
        lab_img = _squeeze3d(nib.load(str(case.label_path)), case.label_path)
        if lab_img.shape != img.shape:
            raise ValueError(
                f"Shape mismatch in case {case.case_id}: image {case.image_path} is {img.shape} "
                f"but label {case.label_path} is {lab_img.shape}. The label must be the "
                "segmentation of this very scan: re-export it on the image grid."
            )
        if not np.allclose(lab_img.affine, img.affine, atol=AFFINE_ATOL):
            raise ValueError(
                f"Affine mismatch in case {case.case_id}: label {case.label_path} is not on the "
                f"grid of image {case.image_path} (image affine\n{np.round(img.affine, 4)}\nlabel "
                f"affine\n{np.round(lab_img.affine, 4)}). Re-save the label with the image's "
                "header (e.g. nib.Nifti1Image(label_data, image.affine, image.header))."
            )
    image, spacing = to_zyx(img, np.float32)
    label = None
    if lab_img is not None:
        raw, _ = to_zyx(lab_img, None)
        lab = np.rint(raw) if raw.dtype.kind == "f" else raw
        if lab.size and (lab.min() < 0 or lab.max() > 255):
            raise ValueError(
                f"Label file {case.label_path} holds values outside 0..255 "
                f"({lab.min()}..{lab.max()}); expected class indices (0 bg, 1 liver, 2 tumour)."
            )
        label = lab.astype(np.uint8)
    return Volume(case.case_id, image, label, spacing, np.asarray(img.affine))


def from_zyx(array_zyx: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Inverse of the canonical reorientation: a ``(z, y, x)`` array back on the file's axes."""
    ras = np.asarray(array_zyx).transpose(2, 1, 0)
    orig = nib.orientations.io_orientation(affine)
    canon = nib.orientations.axcodes2ornt(("R", "A", "S"))
    return nib.orientations.apply_orientation(ras, nib.orientations.ornt_transform(canon, orig))


def write_label_volume(
    pred_zyx: np.ndarray,
    reference_nifti_path: str | os.PathLike,
    out_path: str | os.PathLike,
) -> Path:
    """Writes a ``(z, y, x)`` label volume as NIfTI on the grid of a reference file.

    The array is put back on the reference's axis order (undoing the canonical reorientation)
    and saved with its affine and header (data type uint8, no intensity scaling), so that it
    overlays the original scan in a viewer. The write is atomic.

    Args:
        pred_zyx: ``(D, H, W)`` integer labels in the canonical orientation (as loaded).
        reference_nifti_path: The input image (or label) file the prediction belongs to.
        out_path: Output ``.nii``/``.nii.gz`` file, or an existing folder: then the file is
            ``<folder>/<reference name>`` (ids from input data never escape the folder).

    Returns:
        The written path.
    """
    ref_path = Path(reference_nifti_path)
    ref = _squeeze3d(nib.load(str(ref_path)), ref_path)
    out_path = Path(out_path)
    if out_path.is_dir():
        out = safe_child(out_path, ref_path.name)
    else:
        out = safe_child(out_path.parent, out_path.name)
    if not NII_RE.match(out.name):
        raise ValueError(f"Output file {out} must end in .nii or .nii.gz.")
    pred = np.asarray(pred_zyx)
    if pred.ndim != 3:
        raise ValueError(f"Expected a (z, y, x) label volume, got shape {pred.shape}.")
    if pred.size and (pred.min() < 0 or pred.max() > 255):
        raise ValueError(f"Labels must lie in 0..255 to be written as uint8, got {pred.max()}.")
    data = from_zyx(pred.astype(np.uint8), ref.affine)
    if data.shape != ref.shape:
        raise ValueError(
            f"Prediction of shape {pred.shape} (z, y, x) does not fit {ref_path} of shape "
            f"{ref.shape}: predict on the native grid (slice_size=None) or resample first."
        )
    header = ref.header.copy()
    header.set_data_dtype(np.uint8)
    out_img = nib.Nifti1Image(np.ascontiguousarray(data), ref.affine, header)
    out_img.header.set_slope_inter(1.0, 0.0)
    payload = out_img.to_bytes()
    if out.name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    atomic_write(out, lambda f: f.write(payload))
    return out
