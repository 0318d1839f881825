"""``seglab check-data``: every data check on a whole data set, without training.

``seglab check-data --config experiments/X.yaml [--config more.yaml] [--data.root=/path] ...``
reads the config safely (``yaml.safe_load``, dotted ``--key=value`` overrides as in ``fit``),
builds the readers of the training and validation splits exactly as ``SegDataModule`` does,
scans every file as ``fit`` does before its first step (:mod:`seglab.data.checks.scan`) and
loads every raw sample (``load(i)``, before augmentation). It collects every problem rather than
stopping at the first, prints a report (file, problem, fix) and exits with status 1 if there is
any problem, 0 otherwise.

The checks themselves live in :mod:`seglab.data.checks` (:func:`check_sample`,
:func:`check_dataset`, for reuse); this module adds the config handling (including unknown
config keys) and the command line.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from typing import Any

import yaml

from seglab.data.checks import DEFAULT_MIN_SIZE, Problem, check_dataset, format_report
from seglab.data.checks.scan import scan_dataset


def load_config(paths: list[str], overrides: list[str]) -> dict[str, Any]:
    """Merges YAML config files (safely loaded) and ``--a.b=value`` overrides."""
    from seglab.cli.config_base import expand_configs, read_yaml

    files: list[str] = []
    for path in paths:  # ``base:`` chains expand to several files, bases first
        expanded = expand_configs(["--config", str(path)])
        files += [expanded[i + 1] for i in range(0, len(expanded), 2)]
    cfg: dict[str, Any] = {}
    for path in files:
        data = read_yaml(path) or {}
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
    from seglab.models import create_model
    from seglab.runs.guards import min_input_size

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

    from seglab.cli.config_base import expand_configs
    from seglab.cli.config_check import cli_unknown_keys

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
            train = split == h.train_split
            batch = (h.batch_size if train else h.val_batch_size) or h.batch_size or 1
            scanned = scan_dataset(ds, int(batch), min_size, split)  # what fit scans first
            flagged = {p.file for p in scanned}  # a file the scan named is reported once
            found = scanned + [
                p
                for p in check_dataset(
                    ds, num_classes, ignore_index, in_channels, min_size, args.limit
                )
                if not flagged & set(p.file.split(" + "))
            ]
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
