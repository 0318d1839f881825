"""``seglab check-data``: every data check on a whole data set, without training.

``seglab check-data --config experiments/X.yaml [--config more.yaml] [--data.root=/path] ...``
reads the config safely (``yaml.safe_load``, dotted ``--key=value`` overrides as in ``fit``),
builds the readers of the training and validation splits exactly as ``SegDataModule`` does and
loads every raw sample (``load(i)``, before augmentation). It collects every problem rather than
stopping at the first, prints a report (file, problem, fix) and exits with status 1 if there is
any problem, 0 otherwise.

Checks per sample (:func:`check_sample`): the files can be read (corrupt or truncated images,
palette colours not in the class list, NIfTI image/label mismatches are raised by the readers);
image and mask have the same size; mask values lie in ``[0, num_classes)`` or are the ignore
index; the image has the channels the model takes; no NaN/Inf in float images; the image (after
the split's transforms, if any) is not smaller than the encoder's total stride. Per data set:
the root exists and holds data, images and masks pair up, a split is not empty, and the config
holds no unknown keys. :func:`check_dataset` is the per-data-set part, for reuse.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

DEFAULT_MIN_SIZE = 32


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
            from seglab.guards import too_small_fix, too_small_problem

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
                from seglab.guards import too_small_fix, too_small_problem

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
def load_config(paths: list[str], overrides: list[str]) -> dict[str, Any]:
    """Merges YAML config files (safely loaded) and ``--a.b=value`` overrides."""
    from seglab.config_base import expand_configs

    files: list[str] = []
    for path in paths:  # ``base:`` chains expand to several files, bases first
        expanded = expand_configs(["--config", str(path)])
        files += [expanded[i + 1] for i in range(0, len(expanded), 2)]
    cfg: dict[str, Any] = {}
    for path in files:
        text = Path(path).read_text()
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError(f"Config {path} is not a mapping of keys to values.")
        cfg = deep_merge(cfg, data)
    for key, value in parse_overrides(overrides):
        set_dotted(cfg, key, value)
    return cfg


def deep_merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` over ``base``, recursing into nested mappings (as LightningCLI merges configs)."""
    out = copy.deepcopy(base)
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_overrides(args: list[str]) -> list[tuple[str, Any]]:
    """``["--data.root=/x", "--data.batch_size", "4"]`` -> ``[("data.root", "/x"), ...]``.

    Values are parsed with ``yaml.safe_load`` (so ``{size: 32}`` is a mapping), never evaluated.
    """
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ValueError(f"Unexpected argument {arg!r}; overrides look like --data.root=/x.")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args):
                raise ValueError(f"Override {arg} has no value.")
            value, i = args[i + 1], i + 1
        out.append((key.rstrip("+"), yaml.safe_load(value) if value != "" else ""))
        i += 1
    return out


def set_dotted(cfg: dict[str, Any], key: str, value: Any) -> None:
    """Sets ``cfg["a"]["b"] = value`` for ``key == "a.b"``."""
    parts = key.split(".")
    node = cfg
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value


def model_settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """The task's init arguments (``model.init_args`` or ``model``) with the task's defaults."""
    import inspect

    from seglab.tasks.base import SegmentationTask

    model = cfg.get("model") or {}
    init = dict(model.get("init_args") or {})
    init |= {k: v for k, v in model.items() if k not in ("class_path", "init_args", "dict_kwargs")}
    defaults = {
        k: p.default
        for k, p in inspect.signature(SegmentationTask.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    return defaults | init


def encoder_min_size(settings: dict[str, Any]) -> tuple[int, str]:
    """Smallest input side of the configured model: builds it (offline) and reads its encoder."""
    from seglab.guards import min_input_size
    from seglab.models import create_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        model = create_model(
            settings.get("model", "unet"),
            int(settings.get("num_classes", 2)),
            settings.get("encoder_name"),
            int(settings.get("in_channels", 3)),
            **(settings.get("model_kwargs") or {}),
        )
    except Exception as err:  # the model is not this command's business: fall back
        return DEFAULT_MIN_SIZE, f"default ({type(err).__name__} building the model: {err})"
    return min_input_size(model), "encoder total stride"


# -------------------------------------------------------------------------------- report
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


def run(argv: list[str] | None = None, out=None) -> int:
    """Runs the checks and prints the report; returns the exit status (1 if any problem)."""
    out = out or sys.stdout
    parser = argparse.ArgumentParser(
        prog="seglab check-data",
        description="Runs every data check on a whole data set and prints a report "
        "(no training). Extra --data.x=y / --model.init_args.x=y override the config.",
    )
    parser.add_argument("-c", "--config", action="append", required=True, help="YAML config.")
    parser.add_argument(
        "--splits",
        default=None,
        help="Comma-separated splits (default: data.train_split and data.val_split).",
    )
    parser.add_argument("--limit", type=int, default=None, help="Check only the first N items.")
    parser.add_argument(
        "--min-size",
        type=int,
        default=None,
        help="Smallest input side (default: the encoder's total stride).",
    )
    parser.add_argument("--max-per-kind", type=int, default=20, help="Files shown per kind.")
    args, rest = parser.parse_known_args(argv)
    try:
        cfg = load_config(args.config, rest)
    except (OSError, ValueError, yaml.YAMLError) as err:
        print(f"seglab check-data: cannot read the config: {err}", file=out)
        return 2

    from seglab.config_base import expand_configs
    from seglab.config_check import cli_unknown_keys

    expanded = expand_configs([a for c in args.config for a in ("--config", c)])
    problems: list[Problem] = [
        Problem(msg.split("(in ", 1)[-1].split(")", 1)[0], msg, "", "config keys")
        for msg in cli_unknown_keys(["fit", *expanded, *rest])
    ]
    settings = model_settings(cfg)
    task = settings.get("task", "multiclass")
    num_classes = 2 if task == "binary" else int(settings.get("num_classes", 2))
    ignore_index = settings.get("ignore_index")
    in_channels = int(settings.get("in_channels", 3))
    if args.min_size is not None:
        min_size, why = args.min_size, "--min-size"
    else:
        min_size, why = encoder_min_size(settings)
    data_cfg = dict(cfg.get("data") or {})
    data_cfg["num_workers"] = 0
    header = [
        f"seglab check-data: {', '.join(args.config)}",
        f"  data: {data_cfg.get('dataset', 'synthetic')} at {data_cfg.get('root')}",
        f"  model: task={task}, classes in masks: 0..{num_classes - 1}, ignore_index="
        f"{ignore_index}, in_channels={in_channels}, smallest input side {min_size} ({why})",
    ]
    from seglab.data.datamodule import SegDataModule

    try:
        dm = SegDataModule(**data_cfg)
    except Exception as err:
        problems.append(Problem("config: data", str(err), "", "config"))
        dm = None
    if dm is not None:
        h = dm.hparams
        splits = args.splits.split(",") if args.splits else [h.train_split, h.val_split]
        for split in dict.fromkeys(splits):
            try:
                ds = dm.make_dataset(split, train=split == h.train_split)
            except Exception as err:
                found = Problem(
                    str(data_cfg.get("root")), str(err), "", f"data set ({type(err).__name__})"
                )
                if found not in problems:  # the same root error for every split once
                    problems.append(found)
                header.append(f"  split {split}: cannot be read")
                continue
            found = check_dataset(ds, num_classes, ignore_index, in_channels, min_size, args.limit)
            n = len(ds) if args.limit is None else min(args.limit, len(ds))
            header.append(f"  split {split}: {n} item(s) checked, {len(found)} problem(s)")
            problems += found
    print("\n".join(header), file=out)
    print(format_report(problems, args.max_per_kind), file=out)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``seglab check-data``; exits with status 1 when problems are found."""
    code = run(sys.argv[1:] if argv is None else argv)
    if code:
        raise SystemExit(code)
