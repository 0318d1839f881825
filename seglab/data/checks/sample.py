"""The data checks of one sample and of one data set (used by ``seglab check-data``).

Per sample (:func:`check_sample`): the files can be read (corrupt or truncated images, palette
colours not in the class list, NIfTI image/label mismatches are raised by the readers); image
and mask have the same size; mask values lie in ``[0, num_classes)`` or are the ignore index;
the image has the channels the model takes; no NaN/Inf in float images; the image (after the
split's transforms, if any) is not smaller than the encoder's total stride. Per data set
(:func:`check_dataset`): the root exists and holds data, images and masks pair up, a split is
not empty. Every problem is collected as a :class:`Problem` (file, problem, fix).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_MIN_SIZE = 32


def too_small_problem(where: str, height: int, width: int, min_size: int) -> str:
    """What is wrong with an input smaller than the encoder's total stride."""
    return (
        f"{where} is {height}x{width} (HxW), smaller than {min_size} pixels, the total stride of "
        "the model's encoder: its deepest feature map would be empty."
    )


def too_small_fix(min_size: int) -> str:
    """How to fix an input smaller than the encoder's total stride."""
    return (
        f"pad or resize the inputs (e.g. {{name: PadIfNeeded, min_height: {min_size}, "
        f"min_width: {min_size}}} in data.train_transforms and data.val_transforms), or use a "
        "shallower encoder (model.init_args.model_kwargs.depth or a smaller output_stride)."
    )


@dataclass(frozen=True)
class Problem:
    """One finding of the data checks.

    Attributes:
        file: The file (or data root, or config) concerned.
        problem: What is wrong, with the values found.
        fix: What to change.
        kind: A short category used to group the report (``mask values``, ``size``, ...).
        split: The split the file belongs to, if any.
    """

    file: str
    problem: str
    fix: str = ""
    kind: str = "other"
    split: str | None = None

    def __str__(self) -> str:
        where = f" ({self.split})" if self.split else ""
        fix = f"\n    fix: {self.fix}" if self.fix else ""
        return f"{self.file}{where}\n    problem: {self.problem}{fix}"


# ----------------------------------------------------------------------------- per sample
def _item_files(ds: Any, index: int) -> str:
    """The file(s) behind item ``index`` of a reader, as well as the reader tells."""
    stems, images, masks = (getattr(ds, k, None) for k in ("stems", "images", "masks"))
    if stems is not None and isinstance(images, dict):
        stem = stems[index]
        files = [str(images.get(stem, stem))]
        if isinstance(masks, dict) and stem in masks:
            files.append(str(masks[stem]))
        return " + ".join(files)
    return f"{type(ds).__name__}[{index}]"


def _values_fix(bad: list[int], num_classes: int, ignore_index: int | None) -> str:
    if set(bad) == {255} and ignore_index is None:
        return (
            "255 usually marks pixels to ignore (e.g. VOC borders): set model.init_args."
            "ignore_index: 255. For 0/255 binary masks map it instead: data.dataset_kwargs."
            "mask_map: {255: 1}."
        )
    if bad and min(bad) >= 0:
        return (
            f"If these are real classes, set model.init_args.num_classes to at least "
            f"{max(bad) + 1}; otherwise remap them (data.dataset_kwargs.mask_map) or mark them "
            "as the ignore index."
        )
    return "Negative labels are not allowed: re-export the masks as class indices 0..n-1."


def check_sample(
    sample: dict[str, Any],
    where: str,
    num_classes: int | None,
    ignore_index: int | None = None,
    in_channels: int | None = None,
    min_size: int | None = None,
    split: str | None = None,
) -> list[Problem]:
    """Checks one raw sample (``{"image": HxW[xC], "mask": HxW}``) and returns its problems."""
    out: list[Problem] = []
    image = np.asarray(sample["image"])
    mask = sample.get("mask")
    if image.ndim not in (2, 3):
        return [
            Problem(
                where,
                f"image has shape {image.shape}; expected HxW or HxWxC.",
                "Re-export the image as a 2D picture.",
                "image shape",
                split,
            )
        ]
    channels = 1 if image.ndim == 2 else image.shape[2]
    if in_channels is not None and channels != in_channels:
        out.append(
            Problem(
                where,
                f"image has {channels} channel(s) but the model expects in_channels={in_channels}.",
                f"Set model.init_args.in_channels: {channels}, or convert the images (folder "
                f"data: data.dataset_kwargs.channels: {in_channels} converts greyscale <-> RGB "
                "by rule).",
                "channels",
                split,
            )
        )
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        out.append(
            Problem(
                where,
                "image holds NaN or Inf values.",
                "Fix or drop the file; NaN inputs make the loss non-finite.",
                "nan",
                split,
            )
        )
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape[:2] != image.shape[:2]:
            out.append(
                Problem(
                    where,
                    f"image is {image.shape[0]}x{image.shape[1]} (HxW) but its mask is "
                    f"{mask.shape[0]}x{mask.shape[1]}.",
                    "Image and mask must have the same size: re-export the pair.",
                    "size",
                    split,
                )
            )
        if mask.dtype.kind not in "biu":
            as_int = np.rint(mask)
            if not np.array_equal(as_int, mask):
                out.append(
                    Problem(
                        where,
                        f"mask holds non-integer values ({mask.dtype}).",
                        "Masks hold class indices: re-export as integers.",
                        "mask dtype",
                        split,
                    )
                )
            mask = as_int.astype(np.int64)
        if num_classes is not None and mask.size:
            values = np.unique(mask)
            bad_sel = (values < 0) | (values >= num_classes)
            if ignore_index is not None:
                bad_sel &= values != ignore_index
            bad = [int(v) for v in values[bad_sel]]
            if bad:
                out.append(
                    Problem(
                        where,
                        f"mask values {bad[:10]}{' ...' if len(bad) > 10 else ''} are outside "
                        f"[0, {num_classes}) and not the ignore index ({ignore_index}).",
                        _values_fix(bad, num_classes, ignore_index),
                        "mask values",
                        split,
                    )
                )
    if min_size is not None:
        h, w = image.shape[:2]
        if min(h, w) < min_size:
            fix = too_small_fix(min_size)
            out.append(
                Problem(
                    where,
                    too_small_problem("image", h, w, min_size),
                    fix[0].upper() + fix[1:],
                    "too small",
                    split,
                )
            )
    return out


def _transformed_size(ds: Any, sample: dict[str, Any]) -> tuple[int, int] | None:
    """Image size after the reader's transform (what the model sees), None without one."""
    transform = getattr(ds, "transform", None)
    if transform is None:
        return None
    kw = {"image": np.asarray(sample["image"])}
    if sample.get("mask") is not None:
        kw["mask"] = np.asarray(sample["mask"])
    out = transform(**kw)
    return tuple(np.asarray(out["image"]).shape[:2])


def check_dataset(
    ds: Any,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    in_channels: int | None = None,
    min_size: int | None = None,
    limit: int | None = None,
) -> list[Problem]:
    """Loads every raw sample of a reader (``ds.load(i)``) and collects all problems.

    Args:
        ds: A ``SegDataset`` (anything with ``__len__`` and ``load``).
        num_classes: Classes the masks may hold (binary task: 2); default ``ds.num_classes``.
        ignore_index: The ignore value allowed besides the classes.
        in_channels: Image channels the model takes; None skips the check.
        min_size: Smallest image side the model takes (the encoder's total stride); checked on
            the transformed image when the reader has a transform.
        limit: Check only the first ``limit`` items.

    Returns:
        The problems found, in item order.
    """
    if num_classes is None:
        num_classes = getattr(ds, "num_classes", None)
    split = getattr(ds, "split", None)
    problems: list[Problem] = []
    n = len(ds) if limit is None else min(limit, len(ds))
    for i in range(n):
        try:
            sample = ds.load(i)
        except Exception as err:  # every reader error names its file and the fix
            problems.append(
                Problem(
                    _item_files(ds, i), str(err), "", f"cannot load ({type(err).__name__})", split
                )
            )
            continue
        where = _item_files(ds, i)
        if where.startswith(type(ds).__name__):
            where = f"{where} ({sample.get('name', i)})"
        size_min = min_size
        if min_size is not None and getattr(ds, "transform", None) is not None:
            try:
                shape = _transformed_size(ds, sample)
            except Exception as err:
                problems.append(
                    Problem(
                        where,
                        f"the augmentation pipeline fails on it: {err}",
                        "Check data.train_transforms / val_transforms against the image "
                        "size (e.g. pad before cropping).",
                        "transforms",
                        split,
                    )
                )
                shape = None
            size_min = None
            if shape is not None and min(shape) < min_size:
                fix = too_small_fix(min_size)
                problems.append(
                    Problem(
                        where,
                        too_small_problem("after the transforms the image", *shape, min_size),
                        fix[0].upper() + fix[1:],
                        "too small",
                        split,
                    )
                )
        problems += check_sample(
            sample, where, num_classes, ignore_index, in_channels, size_min, split
        )
    return problems


# ------------------------------------------------------------------------------ config


def format_report(problems: list[Problem], per_kind: int = 20) -> str:
    """Problems grouped by kind, at most ``per_kind`` files shown per kind."""
    if not problems:
        return "No problems found."
    groups: dict[str, list[Problem]] = defaultdict(list)
    for p in problems:
        groups[p.kind].append(p)
    lines = [f"{len(problems)} problem(s) found:"]
    for kind, items in groups.items():
        lines.append(f"\n[{kind}] {len(items)} file(s)")
        lines += [f"  {p}" for p in items[:per_kind]]
        if len(items) > per_kind:
            lines.append(f"  ... and {len(items) - per_kind} more (raise --max-per-kind).")
    return "\n".join(lines)
