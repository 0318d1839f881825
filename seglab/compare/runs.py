"""Loading runs for ``seglab compare``: run folders, globs and W&B, flattened configs."""

from __future__ import annotations

import csv
import glob
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

DEFAULT_METRICS = ("val/mIoU", "val/dice")

#: Config keys (dotted) that do not define a configuration: seeds, paths, logging, speed.
IGNORED_KEYS = frozenset(
    {
        "seed_everything",
        "ckpt_path",
        "config",
        "run.root",
        "run.experiment",
        "run.num_overlays",
        "run.dir",
        "trainer.logger",
        "trainer.callbacks",
        "trainer.default_root_dir",
        "trainer.enable_progress_bar",
        "trainer.enable_model_summary",
        "trainer.log_every_n_steps",
        "data.num_workers",
        "data.init_args.num_workers",
    }
)
IGNORED_PREFIXES = ("run.wandb", "_wandb")


def lower_is_better(metric: str) -> bool:
    """Losses and distances are minimised (the same rule as ``RunSummary``)."""
    return metric.endswith("loss") or "hd95" in metric or "assd" in metric


def _float(v: Any) -> float | None:
    """A number (NaN and Inf kept: they mark a diverged run), or None where absent."""
    if v is None or v == "" or isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (lists stay values)."""
    if not isinstance(tree, dict) or not tree:
        return {prefix[:-1]: tree} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out |= flatten(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v}
    return out


# ----------------------------------------------------------------------------------- runs
@dataclass
class Run:
    """One run: its ``summary.json``, resolved ``config.yaml`` and ``metrics.csv`` rows.

    Attributes:
        path: The run folder (or ``wandb:<entity>/<project>/<id>`` for a W&B run).
        summary: ``summary.json`` as a dict.
        config: ``config.yaml`` as a dict ({} when absent).
        rows: ``metrics.csv`` rows, values as floats (None where empty).
    """

    path: Path
    summary: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, float | None]] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> Run:
        """Reads a run folder."""
        path = Path(path)
        summary = json.loads((path / "summary.json").read_text())
        config: dict[str, Any] = {}
        if (path / "config.yaml").is_file():
            config = yaml.safe_load((path / "config.yaml").read_text()) or {}
        rows: list[dict[str, float | None]] = []
        if (path / "metrics.csv").is_file():
            with open(path / "metrics.csv", newline="") as f:
                rows = [{k: _float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        return cls(path, summary, config, rows)

    @property
    def experiment(self) -> str:
        return str(self.summary.get("experiment") or self.path.parent.name)

    @property
    def name(self) -> str:
        return f"{self.experiment}/{self.path.name}"

    @property
    def seed(self) -> int | None:
        seed = self.summary.get("seed")
        if seed is None or int(seed) < 0:
            seed = self.config.get("seed_everything")
        return None if seed is None or isinstance(seed, bool) else int(seed)

    @property
    def params(self) -> int | None:
        p = self.summary.get("params")
        return None if p is None else int(p)

    @property
    def wall_seconds(self) -> float | None:
        return _float(self.summary.get("wall_seconds"))

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "unknown"))

    @property
    def per_case(self) -> dict[str, dict[str, float]]:
        return self.summary.get("per_case") or {}

    def flat_config(self) -> dict[str, Any]:
        """The config as dotted keys, without the keys that do not define a configuration."""
        return {
            k: v
            for k, v in flatten(self.config).items()
            if k not in IGNORED_KEYS and not k.startswith(IGNORED_PREFIXES)
        }

    def curve(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """``(epochs, values)`` of a metric from ``metrics.csv`` (the last row per epoch)."""
        by_epoch: dict[int, float] = {}
        for row in self.rows:
            v, epoch = row.get(metric), row.get("epoch")
            if v is not None and epoch is not None:
                by_epoch[int(epoch)] = v
        epochs = np.array(sorted(by_epoch), dtype=np.int64)
        return epochs, np.array([by_epoch[e] for e in epochs], dtype=np.float64)

    def best(self, metric: str) -> float | None:
        """The best value over epochs: ``summary.json`` ``best``, else from the curve.

        A non-finite value in ``summary.json`` is returned as it is (see :meth:`diverged`);
        from the curve, the best finite value, or NaN when the curve holds none.
        """
        v = _float((self.summary.get("best") or {}).get(metric))
        if v is not None:
            return v
        _, values = self.curve(metric)
        if not len(values):
            return None
        finite = values[np.isfinite(values)]
        if not len(finite):
            return float("nan")
        return float(finite.min() if lower_is_better(metric) else finite.max())

    def final(self, metric: str) -> float | None:
        """The last validated value: ``summary.json`` ``final``, else the curve's last."""
        v = _float((self.summary.get("final") or {}).get(metric))
        if v is not None:
            return v
        _, values = self.curve(metric)
        return float(values[-1]) if len(values) else None

    def diverged(self, metric: str) -> bool:
        """True where a value of the metric is NaN or Inf: the summary's best or final, a
        validation epoch of the curve or a per-case score."""
        summary = [self.best(metric), self.final(metric)]
        if any(v is not None and not math.isfinite(v) for v in summary):
            return True
        _, values = self.curve(metric)
        if not np.isfinite(values).all():
            return True
        return not all(math.isfinite(v) for v in self.cases(metric).values())

    def has(self, metric: str) -> bool:
        """Whether the run logged the metric at all (summary, curve or per-case scores)."""
        return self.best(metric) is not None or bool(self.cases(metric))

    def metric_names(self) -> set[str]:
        """Every metric name the run holds: summary keys, ``metrics.csv`` columns."""
        names = set(self.summary.get("best") or {}) | set(self.summary.get("final") or {})
        for row in self.rows[:1]:
            names |= set(row)
        return names - {"epoch", "step"}

    def cases(self, metric: str) -> dict[str, float]:
        """Per-case scores of a metric, NaN kept (see the module doc for the key rules)."""
        pc = self.per_case
        for key in _case_keys(metric):
            if key in pc and isinstance(pc[key], dict):
                scores = {str(c): _float(v) for c, v in pc[key].items()}
                return {c: v for c, v in scores.items() if v is not None}
        return {}


def _case_keys(metric: str) -> list[str]:
    keys = [metric]
    base = metric
    for stage in ("val/", "test/"):
        if base.startswith(stage):
            base = base[len(stage) :]
    keys.append(base)
    for suffix in ("_per_case", "_mean"):
        if base.endswith(suffix):
            keys.append(base[: -len(suffix)])
    return keys


def _expand(item: str | Path) -> list[Path]:
    text = str(item)
    paths = (
        [Path(p) for p in sorted(glob.glob(text, recursive=True))]
        if any(c in text for c in "*?[")
        else [Path(text)]
    )
    found: list[Path] = []
    for p in paths:
        if (p / "summary.json").is_file():
            found.append(p)
        elif p.is_dir():
            found += sorted(s.parent for s in p.rglob("summary.json"))
    return found


def load_runs(paths_or_globs: str | Path | Iterable[str | Path]) -> list[Run]:
    """Runs from run folders, folders holding runs, or globs (each run once).

    Raises:
        FileNotFoundError: When nothing matches.
    """
    if isinstance(paths_or_globs, str | Path):
        paths_or_globs = [paths_or_globs]
    seen: set[Path] = set()
    runs: list[Run] = []
    for item in paths_or_globs:
        for p in _expand(item):
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                runs.append(Run.load(p))
    if not runs:
        raise FileNotFoundError(f"No run folder (with summary.json) in {list(paths_or_globs)}.")
    return runs


def load_wandb_runs(project: str, filters: dict[str, Any] | None = None) -> list[Run]:
    """Runs of a W&B project (``entity/project``; needs W&B online and logged in).

    Uses what ``seglab.runs.wandb_logging`` logs: the dotted config, the group (experiment),
    ``val/*`` history against ``epoch`` and the summary keys ``params``, ``wall_seconds`` and
    ``best/<metric>``.
    """
    import wandb

    runs: list[Run] = []
    for r in wandb.Api().runs(project, filters=filters):
        config: dict[str, Any] = {}
        for k, v in r.config.items():
            if k.startswith("_"):
                continue
            node = config
            parts = k.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
            node[parts[-1]] = v
        s = dict(r.summary)
        numeric = {k: _float(v) for k, v in s.items()}
        summary = {
            "experiment": r.group or r.name,
            "run_dir": r.url,
            "status": r.state,
            "params": s.get("params"),
            "wall_seconds": s.get("wall_seconds", s.get("_runtime")),
            "seed": config.get("seed_everything", -1),
            "final": {k: v for k, v in numeric.items() if k.startswith("val/") and v is not None},
            "best": {
                k[5:]: v for k, v in numeric.items() if k.startswith("best/") and v is not None
            },
        }
        rows = [{k: _float(v) for k, v in row.items()} for row in r.scan_history()]
        runs.append(Run(Path(f"wandb:{'/'.join(r.path)}"), summary, config, rows))
    return runs
