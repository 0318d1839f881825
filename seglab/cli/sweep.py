"""``seglab sweep``: a grid of config overrides x seeds, run one after the other on one machine.

Every combination and seed is its own ``seglab fit`` run, named
``<name>__<key>=<value>,...`` (``--run.experiment``) with ``--seed_everything=<seed>``, so the
seeds of a combination share an experiment folder and ``seglab compare`` puts them in one row::

    seglab sweep --config experiments/default.yaml \\
        --grid '{"model.init_args.lr": [0.001, 0.003], "model.init_args.loss.dice": [0, 1]}' \\
        --seeds 0 1 2 -- --trainer.max_epochs=20
    seglab sweep --grid-file experiments/sweeps/deeplabv3_os_rates.yaml --dry-run
    seglab compare 'runs/deeplabv3_os_rates__*' --metrics val/mIoU

Grid keys are the LightningCLI's dotted keys without the leading ``--``; keys inside a dict
argument (``model.init_args.model_kwargs.output_stride``) are merged into that dict by the CLI,
so the rest of ``model_kwargs`` is kept. Values are YAML/JSON (lists, numbers, strings).

Grid file (YAML; command-line options override its entries)::

    name: deeplabv3_os_rates          # experiment prefix (default: the file's stem)
    config: experiments/default.yaml  # one config file or a list
    seeds: [0, 1, 2]
    args: [--model.init_args.model=deeplabv3]   # fixed overrides, before the grid's
    grid:
      model.init_args.model_kwargs.output_stride: [8, 16]
      model.init_args.model_kwargs.aspp_rates: [[6, 12, 18], [12, 24, 36]]

Argument order of each run: ``fit --config ... <file args> <args after --> <grid overrides>
--seed_everything=S --run.experiment=NAME``. Runs go in a fresh Python process each
(``--in-process`` runs them in this one), with ``WANDB_MODE=offline`` unless set. A failed run
stops the sweep unless ``--keep-going``; ``--resume`` skips combinations and seeds that already
have a finished run. A manifest ``<run.root>/<name>.sweep.json`` records every command, its exit
status and duration.

For a W&B server, ``experiments/sweeps/wandb_deeplabv3_os_rates.yaml`` is the same grid as a
W&B sweep (``wandb sweep ...`` then ``wandb agent ...``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass
class SweepRun:
    """One run of a sweep: its experiment name, seed, overrides and ``seglab`` arguments."""

    experiment: str
    seed: int | None
    overrides: dict[str, Any]
    argv: list[str]


def format_value(value: Any) -> str:
    """A value as the CLI reads it (JSON for lists/dicts, ``true``/``false``, ``null``)."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _slug(value: Any) -> str:
    if isinstance(value, list | tuple):
        text = "-".join(_slug(v) for v in value)
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, dict):
        text = "-".join(f"{k}{_slug(v)}" for k, v in value.items())
    else:
        text = format_value(value)
    keep = "".join(c if c.isalnum() or c in "._+-" else "-" for c in text)
    return keep.strip("-") or "none"


def short_keys(keys: Sequence[str]) -> dict[str, str]:
    """The shortest unique dotted suffix of each key: ``model.init_args.lr`` -> ``lr``."""
    out: dict[str, str] = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            cand = ".".join(parts[-n:])
            if sum(1 for k in keys if k == cand or k.endswith("." + cand)) == 1:
                out[key] = cand
                break
        else:
            out[key] = key
    return out


def combo_name(overrides: dict[str, Any], keys: Sequence[str] | None = None) -> str:
    """``output_stride=8,aspp_rates=6-12-18`` for a combination."""
    short = short_keys(list(keys or overrides))
    return ",".join(f"{short[k]}={_slug(v)}" for k, v in overrides.items())


def expand_grid(grid: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """All combinations of a grid (the first key varies slowest)."""
    for key, values in grid.items():
        if not isinstance(values, list | tuple) or not values:
            raise ValueError(f"Grid entry {key!r} needs a non-empty list of values, got {values!r}")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*grid.values())]


def plan(
    configs: Sequence[str],
    grid: dict[str, Sequence[Any]],
    seeds: Sequence[int | None],
    name: str,
    args: Sequence[str] = (),
    subcommand: str = "fit",
) -> list[SweepRun]:
    """The runs of a sweep, in order (combination-major, then seed)."""
    runs = []
    combos = expand_grid(grid) if grid else [{}]
    for combo in combos:
        experiment = f"{name}__{combo_name(combo, list(grid))}" if combo else name
        for seed in seeds:
            argv = [subcommand]
            for c in configs:
                argv += ["--config", str(c)]
            argv += list(args)
            argv += [f"--{k.lstrip('-')}={format_value(v)}" for k, v in combo.items()]
            if seed is not None:
                argv.append(f"--seed_everything={seed}")
            argv.append(f"--run.experiment={experiment}")
            runs.append(SweepRun(experiment, seed, dict(combo), argv))
    return runs


def _run_root(argv: Sequence[str], configs: Sequence[str]) -> Path:
    root = None
    for c in configs:
        try:
            root = ((yaml.safe_load(Path(c).read_text()) or {}).get("run") or {}).get("root", root)
        except OSError:
            pass
    for a in argv:
        if a.startswith("--run.root="):
            root = a.split("=", 1)[1]
    return Path(root or "runs")


def finished(root: Path, experiment: str, seed: int | None) -> bool:
    """Whether ``<root>/<experiment>`` holds a finished run of this seed."""
    for s in (root / experiment).glob("*/summary.json"):
        try:
            summary = json.loads(s.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if summary.get("status") == "finished" and (seed is None or summary.get("seed") == seed):
            return True
    return False


def run_one(argv: Sequence[str], in_process: bool = False) -> int:
    """Runs ``seglab <argv>``; returns the exit status."""
    env = dict(os.environ)
    env.pop("SEGLAB_RUN_DIR", None)  # a fresh run folder per run
    env.setdefault("WANDB_MODE", "offline")
    if not in_process:
        return subprocess.call([sys.executable, "-m", "seglab", *argv], env=env)
    from seglab.cli.main import run_cli

    os.environ.pop("SEGLAB_RUN_DIR", None)
    os.environ.setdefault("WANDB_MODE", "offline")
    try:
        run_cli(list(argv))
    except SystemExit as e:  # jsonargparse errors exit
        return int(e.code or 0)
    except Exception as e:  # noqa: BLE001 - report and go on with --keep-going
        print(f"seglab sweep: run failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        os.environ.pop("SEGLAB_RUN_DIR", None)
    return 0


def load_grid_file(path: str | Path) -> dict[str, Any]:
    """A grid file as a dict with ``name``, ``config`` (list), ``seeds``, ``args``, ``grid``."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    unknown = set(data) - {"name", "config", "seeds", "args", "grid", "description"}
    if unknown:
        raise ValueError(f"Unknown keys in grid file {path}: {sorted(unknown)}")
    config = data.get("config") or []
    data["config"] = [config] if isinstance(config, str) else list(config)
    data.setdefault("name", Path(path).stem)
    return data


def main(argv: Sequence[str] | None = None) -> list[SweepRun]:
    """``seglab sweep``; returns the planned runs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(
        prog="seglab sweep",
        description="Run a grid of overrides x seeds sequentially, each as its own run.",
        epilog="Arguments after -- go to every run (e.g. -- --trainer.max_epochs=5).",
    )
    p.add_argument("--config", action="append", default=None, help="Config file(s).")
    p.add_argument("--grid", default=None, help='JSON/YAML: {"dotted.key": [values], ...}')
    p.add_argument("--grid-file", default=None, help="YAML grid file (see module doc).")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="Default: 0.")
    p.add_argument("--name", default=None, help="Experiment prefix (default: config stem).")
    p.add_argument("--subcommand", default="fit", choices=("fit", "validate", "test"))
    p.add_argument("--dry-run", action="store_true", help="Print the commands only.")
    p.add_argument("--in-process", action="store_true", help="Run in this Python process.")
    p.add_argument("--keep-going", action="store_true", help="Go on after a failed run.")
    p.add_argument("--resume", action="store_true", help="Skip finished runs.")
    args = p.parse_args(argv)

    spec: dict[str, Any] = {"config": [], "seeds": None, "args": [], "grid": {}, "name": None}
    if args.grid_file:
        spec |= load_grid_file(args.grid_file)
    if args.grid:
        grid = yaml.safe_load(args.grid)
        if not isinstance(grid, dict):
            p.error("--grid must be a mapping of dotted keys to lists of values")
        spec["grid"] = {**spec["grid"], **grid}
    configs = args.config or spec["config"]
    if not configs:
        p.error("give --config (or config: in the grid file)")
    seeds = args.seeds if args.seeds is not None else (spec["seeds"] or [0])
    name = args.name or spec["name"] or Path(configs[-1]).stem
    fixed = [str(a) for a in spec.get("args") or []] + extra
    runs = plan(configs, spec["grid"], seeds, name, fixed, args.subcommand)
    root = _run_root(fixed, configs)

    n_combos = len(runs) // max(1, len(seeds))
    print(f"seglab sweep {name}: {n_combos} combination(s) x {len(seeds)} seed(s) = {len(runs)}")
    if args.dry_run:
        for r in runs:
            print("seglab " + shlex.join(r.argv))
        return runs

    manifest = root / f"{name}.sweep.json"
    record: dict[str, Any] = {"name": name, "grid": spec["grid"], "seeds": seeds, "runs": []}

    def save(entry: dict[str, Any]) -> None:
        record["runs"].append(entry)
        root.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps(record, indent=2))

    failures = 0
    for i, r in enumerate(runs, 1):
        entry = {"experiment": r.experiment, "seed": r.seed, "argv": r.argv}
        if args.resume and finished(root, r.experiment, r.seed):
            print(f"[{i}/{len(runs)}] skip (finished): {r.experiment} seed {r.seed}")
            save(entry | {"status": "skipped"})
            continue
        print(f"[{i}/{len(runs)}] seglab {shlex.join(r.argv)}", flush=True)
        start = time.time()
        code = run_one(r.argv, args.in_process)
        entry |= {"status": "ok" if code == 0 else "failed", "returncode": code}
        save(entry | {"seconds": round(time.time() - start, 1)})
        if code != 0:
            failures += 1
            if not args.keep_going:
                print(f"seglab sweep: run {i} failed (exit {code}); stopping", file=sys.stderr)
                raise SystemExit(code)
    print(f"done: {len(runs) - failures} ok, {failures} failed; manifest {manifest}")
    if spec["grid"]:
        print(f"compare: seglab compare '{root}/{name}__*'")
    if failures:
        raise SystemExit(1)
    return runs


if __name__ == "__main__":
    main()
