"""Shared file helpers for the standard dataset readers (VOC, Cityscapes, CamVid, ADE20K).

* :func:`read_rgb` reads an image as ``HxWx3 uint8``; a corrupt or truncated file raises a
  ``ValueError`` that names the file.
* :func:`read_label` reads an *index* label PNG as ``HxW int64`` class ids: palette (``P``) images
  keep their indices (the palette colours are ignored), greyscale (``L``, 16-bit ``I;16``/``I``)
  images are taken as-is, and colour (``RGB``/``RGBA``) label images are refused, because their
  pixel values are colours, not class ids.
* :func:`ensure_dir_exists` turns a missing dataset root into a ``FileNotFoundError`` that shows
  the expected layout and how to fix it.
* :func:`check_same_size` refuses an image/label pair whose sizes differ.
* :func:`open_image` is the one way every PIL-based reader opens a file: decoded completely (a
  corrupt file raises here, naming it), the EXIF orientation applied (a phone JPEG tagged
  "rotate 90" is used as it is displayed, and a mask carrying the same tag is rotated alike),
  and, for masks, lossy formats refused: JPEG compression turns a label 200 into 199..203 at
  region edges, so a JPEG mask is never read as labels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from seglab.data.datasets.base import SegDataset

# Label image modes whose pixel values are class ids.
_INDEX_MODES = ("P", "L", "I", "I;16", "I;16L", "I;16B", "1")


def _open_fully(path: Path, what: str) -> Image.Image:
    """Opens and decodes ``path`` completely, so truncation shows up here and not later."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist.")
    try:
        img = Image.open(path)
        img.load()
    except (OSError, SyntaxError, ValueError) as err:  # UnidentifiedImageError is an OSError
        raise ValueError(
            f"Cannot read {what.lower()} {path}: {type(err).__name__}: {err}. The file is corrupt, "
            "truncated or not an image; re-download or re-extract it (or remove it and its entry "
            "from the split)."
        ) from err
    return img


#: PIL formats that store pixel values lossily: never valid for masks.
LOSSY_FORMATS = ("JPEG", "MPO")
EXIF_ORIENTATION = 0x0112


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation tag of an opened image (1, upright, when absent)."""
    try:
        return int(img.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except Exception:  # a damaged EXIF block: treat as upright (the pixels decide)
        return 1


def lossy_mask_message(path: Path, fmt: str) -> str:
    """What to say about a mask stored in a lossy format."""
    return (
        f"Mask {path} is a {fmt} file: masks must be lossless (PNG, TIFF or BMP). {fmt} "
        "compression changes label values at region edges (a label 200 becomes 199..203), so "
        "they cannot be read as classes. Re-export the masks as PNG from the original labels."
    )


def open_image(path: str | os.PathLike, what: str = "Image", mask: bool = False) -> Image.Image:
    """Opens ``path`` completely decoded, with its EXIF orientation applied.

    Args:
        path: The file.
        what: ``Image``, ``Mask``, ``Label image``: used in error messages.
        mask: Refuse lossy formats (JPEG).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file cannot be decoded, or a mask is stored lossily; the message names
            the file and the fix.
    """
    path = Path(path)
    img = _open_fully(path, what)
    if mask and img.format in LOSSY_FORMATS:
        raise ValueError(lossy_mask_message(path, img.format))
    if exif_orientation(img) != 1:
        img = ImageOps.exif_transpose(img)
    return img


def duplicate_stem_message(first: Path, second: Path) -> str:
    """What to say about two files of one stem (``img00.png`` beside ``img00.jpg``)."""
    return (
        f"{first} and {second} have the same stem {first.stem!r}: images and masks are paired "
        "by stem, so one of them would be dropped silently. Remove or rename one of them."
    )


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as an ``HxWx3 uint8`` RGB array.

    Greyscale, palette and RGBA images are converted to RGB (alpha dropped).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file cannot be decoded (corrupt, truncated, not an image); the message
            names the file.
    """
    path = Path(path)
    img = open_image(path, "Image")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def read_label(path: str | os.PathLike, dataset_name: str = "This dataset") -> np.ndarray:
    """Reads an index label image as an ``HxW int64`` array of raw label values.

    Palette (``P``) PNGs keep their indices (as in Pascal VOC's ``SegmentationClass``), greyscale
    PNGs (``L``, 16-bit) are taken as-is. No class mapping is applied here.

    Args:
        path: The label file.
        dataset_name: Used in the error message for colour label images.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file cannot be decoded, or it is a colour (RGB/RGBA/...) image whose pixel
            values are colours rather than class ids.
    """
    path = Path(path)
    img = open_image(path, "Label image", mask=True)
    if img.mode not in _INDEX_MODES:
        raise ValueError(
            f"Label image {path} has mode {img.mode!r} (colour), but {dataset_name} expects index "
            "label PNGs whose pixel values are class ids (palette 'P' or greyscale 'L' mode). "
            "Use the dataset's index/label-id PNGs (not the colour visualisations), or convert "
            "the colours to class ids first."
        )
    return np.asarray(img).astype(np.int64)


def ensure_dir_exists(root: str | os.PathLike, dataset_name: str, expected_layout: str) -> Path:
    """Returns ``Path(root)`` if it is a directory, else raises a helpful ``FileNotFoundError``.

    Args:
        root: The dataset root given by the user.
        dataset_name: Human-readable dataset name used in the message.
        expected_layout: A short (multi-line) description of the expected folder layout.

    Raises:
        FileNotFoundError: ``root`` does not exist or is not a directory. The message names the
            root, shows ``expected_layout`` and says how to fix it.
    """
    path = Path(root).expanduser()
    if not path.is_dir():
        state = "is not a directory" if path.exists() else "does not exist"
        raise FileNotFoundError(
            f"{dataset_name} root {str(path)!r} {state}.\n"
            f"Expected layout:\n{expected_layout.rstrip()}\n"
            f"Fix: download and extract {dataset_name} so that it matches this layout, and pass "
            "its folder as root=... (e.g. --data.root /path/to/it)."
        )
    return path


def check_same_size(
    image: np.ndarray, mask: np.ndarray, image_path: Path, label_path: Path
) -> None:
    """Raises ``ValueError`` naming both files when image and mask sizes differ."""
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(
            f"Image {image_path} is {image.shape[1]}x{image.shape[0]} (WxH) but its label "
            f"{label_path} is {mask.shape[1]}x{mask.shape[0]}; the pair does not belong together "
            "or one file is damaged."
        )


def stems(folder: Path, suffix: str) -> dict[str, Path]:
    """``{stem: path}`` for the files in ``folder`` whose names end with ``suffix``.

    ``stem`` is the name without ``suffix`` (so ``suffix`` may be longer than the extension, e.g.
    ``_gtFine_labelIds.png``). Returns an empty dict when ``folder`` does not exist.
    """
    if not folder.is_dir():
        return {}
    out: dict[str, Path] = {}
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.endswith(suffix) and not entry.name.startswith("."):
                out[entry.name[: len(entry.name) - len(suffix)]] = Path(entry.path)
    return out


class PairedReader(SegDataset):
    """A reader whose items are ``(name, image path, label path)`` triples in ``self.samples``.

    Subclasses fill ``samples`` and ``dataset_name`` and may override :meth:`map_labels` to turn
    the label file's values into class indices (ids to trainIds, void to the ignore index).
    """

    dataset_name = "dataset"
    samples: list[tuple[str, Path, Path]]

    def map_labels(self, label: np.ndarray) -> np.ndarray:
        """The label file's values as class indices; the identity by default."""
        return label

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> dict:
        name, image_path, label_path = self.samples[index]
        image = read_rgb(image_path)
        mask = self.map_labels(read_label(label_path, self.dataset_name))
        check_same_size(image, mask, image_path, label_path)
        return {"image": image, "mask": mask, "name": name}
