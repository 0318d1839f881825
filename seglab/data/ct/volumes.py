"""CT volumes on disk: loading in one orientation, and writing labels back.

Case discovery (LiTS 2017, MSD Task03, nnU-Net raw, one folder per case) is in
:mod:`seglab.data.ct.cases` (re-exported here).

Orientation convention. Every volume is reoriented with ``nib.as_closest_canonical`` (RAS+:
array axes point to patient Right, Anterior, Superior) and then transposed to ``(z, y, x)``, so
``array[z]`` is an axial slice, ``z`` grows towards the head, rows (``y``) towards anterior and
columns (``x``) towards the patient's right. (Radiological display, anterior up and patient
right on the left, is this slice rotated by 180 degrees.) Spacing is ``(z, y, x)`` in mm from
the header zooms. A file whose affine is the identity (or whose voxel size is missing or zero)
says nothing about the spacing: it is loaded with a warning, ``Volume.spacing_known`` is False
and distances (HD95) are then in voxels, not mm. :func:`write_label_volume` undoes the
reorientation, so a written prediction overlays the original image in any viewer.

Label volumes must match their image in shape and affine; a mismatch is an error naming both
files (LiTS labels are sometimes exported with a different header: fix the file, do not guess).
"""

from __future__ import annotations

import gzip
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from seglab.data.ct.cases import (  # noqa: F401  (re-exported: the old home of discovery)
    LAYOUT_HELP,
    NII_RE,
    Case,
    _natural_key,
    find_cases,
)
from seglab.data.io import atomic_write, read_named, safe_child

AFFINE_ATOL = 1e-3  # mm: image/label affines closer than this are "the same"


@dataclass
class Volume:
    """A loaded case in the canonical ``(z, y, x)`` orientation.

    Attributes:
        case_id: Case id.
        image: ``(D, H, W)`` float32 Hounsfield units.
        label: ``(D, H, W)`` uint8 labels, or None for an unlabelled case.
        spacing: ``(z, y, x)`` voxel size in mm.
        affine: The original (not reoriented) affine of the image file.
        spacing_known: False when the header gives no voxel size (identity affine, or
            missing / zero zooms): ``spacing`` is then 1 voxel, not mm.
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    spacing: tuple[float, float, float]
    affine: np.ndarray
    spacing_known: bool = True


def spacing_known(img: nib.spatialimages.SpatialImage) -> bool:
    """Whether a NIfTI header states the voxel size: not an identity affine (nibabel's default
    for a file written without one), and finite, positive zooms."""
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=np.float64)
    if zooms.size < 3 or not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
        return False
    return not np.allclose(np.asarray(img.affine)[:3, :3], np.eye(3))


def header_spacing_known(path: str | os.PathLike) -> bool:
    """:func:`spacing_known` of a file, reading its header only."""
    return spacing_known(nib.load(str(path)))


def warn_unknown_spacing(path: str | os.PathLike) -> None:
    """The warning for a volume without a voxel size."""
    warnings.warn(
        f"{path}: the affine is the identity or the voxel size is missing, so the spacing is "
        "unknown: HD95 and other distances are in voxels, not mm. Re-save the scan with its "
        "real header (pixdim / sform) to get mm.",
        UserWarning,
        stacklevel=3,
    )


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
    img = _squeeze3d(read_named(case.image_path, nib.load, case.image_path), case.image_path)
    lab_img = None
    if case.label_path is not None:
        lab_img = _squeeze3d(
            read_named(case.label_path, nib.load, case.label_path), case.label_path
        )
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
    image, spacing = read_named(case.image_path, to_zyx, img, np.float32)
    label = None
    if lab_img is not None:
        raw, _ = read_named(case.label_path, to_zyx, lab_img, None)
        if raw.dtype.kind == "f" and not np.array_equal(raw, lab := np.round(raw)):
            raise ValueError(
                f"Label file {case.label_path} holds non-integer values ({raw[raw != lab][0]:g})"
                ": labels are class indices, seglab does not round them. Save them as integers."
            )
        lab = raw
        if lab.size and (lab.min() < 0 or lab.max() > 255):
            raise ValueError(
                f"Label file {case.label_path} holds values outside 0..255 "
                f"({lab.min()}..{lab.max()}); expected class indices (0 bg, 1 liver, 2 tumour)."
            )
        label = lab.astype(np.uint8)
    known = spacing_known(img)
    if not known:
        warn_unknown_spacing(case.image_path)
    return Volume(case.case_id, image, label, spacing, np.asarray(img.affine), known)


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
