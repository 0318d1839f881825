"""A fast scan of every file of a split, run before the first step (and by ``check-data``).

Reads headers only (PIL opens lazily): size, mode, format and EXIF orientation of each image
and mask; PNG files are verified chunk by chunk (checksums, no decompression) and JPEG files must
end with their end-of-image marker, so a corrupt or truncated file is found before training
instead of at step 13. Per pair it reports a mask stored lossily (JPEG), an image and mask of
different sizes (with the EXIF rotation named when that is the cause); per split, images of
several sizes that the transforms do not bring to one size when batches hold more than one
image (``torch.stack`` would fail mid-epoch), and images smaller than the encoder's total
stride after the transforms. Each finding is a :class:`~seglab.data.checks.sample.Problem`
naming the file and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from seglab.data.checks.sample import Problem, format_report, too_small_fix, too_small_problem
from seglab.data.datasets.imageio import LOSSY_FORMATS, exif_orientation, lossy_mask_message

SWAPPING = (5, 6, 7, 8)  # EXIF orientations that turn the picture by 90 degrees


class DataScanError(ValueError):
    """The scan before the first step found problems; the message lists each with its fix."""


@dataclass(frozen=True)
class FileInfo:
    """What the header of one image file says."""

    path: Path
    size: tuple[int, int]  # (H, W) as used, EXIF orientation applied
    format: str | None
    orientation: int


def sample_files(ds: Any) -> list[tuple[str, Path, Path | None]]:
    """``(name, image file, mask file or None)`` of each item, as far as the reader tells."""
    ds = getattr(ds, "dataset", ds)
    stems, images, masks = (getattr(ds, k, None) for k in ("stems", "images", "masks"))
    if stems is not None and isinstance(images, dict):
        masks = masks if isinstance(masks, dict) else {}
        return [(s, Path(images[s]), Path(masks[s]) if s in masks else None) for s in stems]
    samples = getattr(ds, "samples", None)
    if samples and isinstance(samples[0], tuple | list) and len(samples[0]) == 3:
        return [(str(n), Path(i), Path(m) if m else None) for n, i, m in samples]
    return []


def _jpeg_complete(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 4096))
        return b"\xff\xd9" in f.read()


def scan_file(path: Path, what: str, split: str | None) -> tuple[FileInfo | None, list[Problem]]:
    """The header of one image file, or the problem that it cannot be read."""
    fix = "Re-export or re-download the file, or remove it (and its pair) from the split."
    try:
        with Image.open(path) as im:
            fmt, (w, h) = im.format, im.size
            if fmt == "PNG":
                im.verify()  # every chunk's CRC, up to IEND: no decompression
        with Image.open(path) as im:  # verify() leaves the image unusable: open it again
            orientation = exif_orientation(im)
        if fmt in LOSSY_FORMATS and not _jpeg_complete(path):
            raise OSError("the JPEG data has no end-of-image marker (the file is truncated)")
    except Exception as err:
        problem = f"{what} cannot be read: {type(err).__name__}: {err}"
        return None, [Problem(str(path), problem, fix, "corrupt file", split)]
    size = (w, h) if orientation in SWAPPING else (h, w)
    return FileInfo(path, size, fmt, orientation), []


def _pair_problems(image: FileInfo, mask: FileInfo, split: str | None) -> Iterable[Problem]:
    if mask.format in LOSSY_FORMATS:
        yield Problem(
            str(mask.path),
            lossy_mask_message(mask.path, mask.format),
            "Export the masks losslessly (PNG) from the original labels; do not convert "
            "JPEG masks, their values are already changed.",
            "lossy mask",
            split,
        )
    if image.size == mask.size:
        return
    sizes = f"image {image.path} is {image.size[0]}x{image.size[1]} (HxW, as displayed)"
    sizes += f" but its mask {mask.path} is {mask.size[0]}x{mask.size[1]}"
    if image.orientation != mask.orientation and image.size == mask.size[::-1]:
        yield Problem(
            str(image.path),
            f"{sizes}: the image carries EXIF orientation {image.orientation} (it is rotated "
            f"when displayed; seglab applies the rotation to images and masks alike) but the "
            f"mask has orientation {mask.orientation}, so it was drawn on the unrotated pixels.",
            "Re-save the image with the rotation applied (PIL.ImageOps.exif_transpose) and redraw "
            "or rotate the mask to match, or give the mask the same EXIF orientation tag.",
            "exif rotation",
            split,
        )
    else:
        yield Problem(
            str(image.path),
            f"{sizes}.",
            "Image and mask must have the same size: re-export the pair.",
            "size",
            split,
        )


def _output_size(transform: Any, size: tuple[int, int], has_mask: bool) -> tuple[int, int]:
    """The image size a transform produces from an input of ``size`` (zeros, 3 channels)."""
    if transform is None:
        return size
    kw: dict[str, Any] = {"image": np.zeros((*size, 3), np.uint8)}
    if has_mask:
        kw["mask"] = np.zeros(size, np.uint8)
    return tuple(np.asarray(transform(**kw)["image"]).shape[:2])


def scan_dataset(
    ds: Any, batch_size: int = 1, min_size: int | None = None, split: str | None = None
) -> list[Problem]:
    """Scans every file of a reader's split (headers only) and returns the problems found.

    Args:
        ds: A ``SegDataset`` whose files are known (``stems``/``images``/``masks`` like the
            folder reader, or ``samples`` of ``(name, image, label)``); other readers (synthetic,
            CT volumes) are skipped.
        batch_size: Images per batch of this split: with more than one, every image must reach
            the model at one size.
        min_size: Smallest side the model takes (the encoder's total stride), or None.
        split: Name used in the report (default: ``ds.split``).
    """
    split = split or getattr(getattr(ds, "dataset", ds), "split", None)
    problems: list[Problem] = []
    sizes: dict[tuple[int, int], Path] = {}
    has_mask = False
    for _, image_path, mask_path in sample_files(ds):
        image, found = scan_file(image_path, "image", split)
        problems += found
        mask = None
        if mask_path is not None:
            has_mask = True
            mask, found = scan_file(mask_path, "mask", split)
            problems += found
        if image is None:
            continue
        sizes.setdefault(image.size, image.path)
        if mask is not None:
            problems += _pair_problems(image, mask, split)
    problems += _size_problems(ds, sizes, has_mask, batch_size, min_size, split)
    return problems


def _size_problems(
    ds: Any,
    sizes: dict[tuple[int, int], Path],
    has_mask: bool,
    batch_size: int,
    min_size: int | None,
    split: str | None,
) -> list[Problem]:
    transform = getattr(ds, "transform", None)
    out_sizes: dict[tuple[int, int], Path] = {}
    problems: list[Problem] = []
    for size, path in sizes.items():
        try:
            out = _output_size(transform, size, has_mask)
        except Exception as err:
            problems.append(
                Problem(
                    str(path),
                    f"the transforms fail on its size {size[0]}x{size[1]} (HxW): {err}",
                    "Pad before cropping ({name: PadIfNeeded, min_height: H, min_width: W}) "
                    "in data.train_transforms / data.val_transforms.",
                    "transforms",
                    split,
                )
            )
            continue
        out_sizes.setdefault(out, path)
        if min_size is not None and min(out) < min_size:
            fix = too_small_fix(min_size)
            what = "after the transforms the image" if transform is not None else "the image"
            problems.append(
                Problem(
                    str(path),
                    too_small_problem(what, *out, min_size),
                    fix[0].upper() + fix[1:],
                    "too small",
                    split,
                )
            )
    if batch_size > 1 and len(out_sizes) > 1:
        shown = ", ".join(f"{h}x{w} ({p.name})" for (h, w), p in list(out_sizes.items())[:4])
        problems.append(
            Problem(
                str(next(iter(out_sizes.values())).parent),
                f"the images reach the model at {len(out_sizes)} different sizes (HxW: {shown}"
                f"{', ...' if len(out_sizes) > 4 else ''}), which cannot be stacked into "
                f"batches of {batch_size}.",
                "Bring them to one size in the transforms (e.g. {name: PadIfNeeded, min_height: "
                "H, min_width: W} then {name: RandomCrop / CenterCrop, height: H, width: W}, or "
                "{name: Resize, height: H, width: W}), or use batches of one (data.batch_size: "
                "1 / data.val_batch_size: 1).",
                "mixed sizes",
                split,
            )
        )
    return problems


def scan_datamodule(
    datamodule: Any, min_size: int | None = None, done: set[int] | None = None
) -> list[Problem]:
    """Scans each split a datamodule has set up (training batches: ``batch_size``; the others:
    ``val_batch_size`` or ``batch_size``), skipping the readers whose ``id`` is in ``done``."""
    h = getattr(datamodule, "hparams", {}) or {}
    done = set() if done is None else done
    problems: list[Problem] = []
    for split, ds in (getattr(datamodule, "datasets", None) or {}).items():
        if id(ds) in done:
            continue
        done.add(id(ds))
        batch = h.get("batch_size") if split == "train" else h.get("val_batch_size")
        problems += scan_dataset(ds, int(batch or h.get("batch_size") or 1), min_size)
    return problems


def raise_scan_problems(problems: list[Problem], where: str = "before the first step") -> None:
    """Raises :class:`DataScanError` with the report when there is any problem."""
    if problems:
        raise DataScanError(
            f"The data scan {where} found {len(problems)} problem(s); nothing was trained.\n"
            f"{format_report(problems)}"
        )
