"""The comparison table: rows of runs grouped by config, mean +- std, tests to a baseline."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np

from seglab.compare.runs import DEFAULT_METRICS, Run
from seglab.compare.significance import Delta, check_metrics, paired_delta


# ---------------------------------------------------------------------------------- table
@dataclass
class Stat:
    """Mean and sample standard deviation (NaN for one value) of the runs' finite values.

    Attributes:
        mean: Mean of the finite values (NaN when every run diverged).
        std: Sample standard deviation (ddof 1) of the finite values, NaN for fewer than two.
        n: Number of runs with a value, diverged ones included.
        values: Every run's value, NaN / Inf kept.
        diverged: Runs whose metric went NaN / Inf (see ``Run.diverged``); the table marks them.
    """

    mean: float
    std: float
    n: int
    values: list[float]
    diverged: int = 0

    @classmethod
    def of(cls, values: Iterable[float | None], diverged: Iterable[bool] = ()) -> Stat | None:
        pairs = [(float(v), d) for v, d in zip_longest(values, diverged) if v is not None]
        if not pairs:
            return None
        vals = [v for v, _ in pairs]
        finite = [v for v in vals if math.isfinite(v)]
        n_div = sum(1 for v, d in pairs if d or not math.isfinite(v))
        mean = float(np.mean(finite)) if finite else float("nan")
        std = float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")
        return cls(mean, std, len(vals), vals, n_div)

    @property
    def finite(self) -> list[float]:
        """The values that are not NaN / Inf."""
        return [v for v in self.values if math.isfinite(v)]


@dataclass
class Row:
    """One configuration: its runs and statistics."""

    label: str
    experiment: str
    runs: list[Run]
    best: dict[str, Stat | None]
    final: dict[str, Stat | None]
    params: int | None
    wall: Stat | None
    delta: dict[str, Delta] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]


@dataclass
class Table:
    """The comparison: ``rows`` (one per configuration) for ``metrics``."""

    metrics: list[str]
    rows: list[Row]
    baseline: str | None = None

    def row(self, label: str) -> Row:
        """The row with this label (or, if unique, this experiment name)."""
        for r in self.rows:
            if r.label == label:
                return r
        hits = [r for r in self.rows if r.experiment == label]
        if len(hits) == 1:
            return hits[0]
        raise KeyError(f"No row {label!r}; rows: {[r.label for r in self.rows]}")

    def records(self) -> list[dict[str, Any]]:
        """The table as flat dicts (the CSV columns)."""
        out = []
        for r in self.rows:
            rec: dict[str, Any] = {
                "config": r.label,
                "experiment": r.experiment,
                "runs": len(r.runs),
                "seeds": " ".join(str(s) for s in r.seeds),
            }
            for m in self.metrics:
                for kind, stats in (("best", r.best), ("final", r.final)):
                    s = stats.get(m)
                    rec[f"{m}/{kind}_mean"] = s.mean if s else None
                    rec[f"{m}/{kind}_std"] = s.std if s and len(s.finite) > 1 else None
                    rec[f"{m}/{kind}_diverged"] = s.diverged if s else None
                if self.baseline is not None:
                    d = r.delta.get(m)
                    rec[f"{m}/delta_best"] = d.diff if d else None
                    rec[f"{m}/test"] = d.test if d else None
                    rec[f"{m}/n"] = d.n if d else None
                    rec[f"{m}/p"] = d.p if d else None
            rec["params"] = r.params
            rec["wall_seconds_mean"] = r.wall.mean if r.wall else None
            rec["wall_seconds_std"] = r.wall.std if r.wall and r.wall.n > 1 else None
            rec["run_dirs"] = " ".join(str(run.path) for run in r.runs)
            out.append(rec)
        return out


def _short(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else v
    return text if len(text) <= 24 else text[:21] + "..."


def group_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs grouped by experiment + config without seed and paths, labelled (insertion order).

    Several configs under one experiment name are told apart by the keys that differ.
    """
    groups: dict[tuple[str, str], list[Run]] = {}
    configs: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        flat = run.flat_config()
        key = (run.experiment, json.dumps(flat, sort_keys=True, default=str))
        groups.setdefault(key, []).append(run)
        configs[key] = flat
    per_experiment: dict[str, list[tuple[str, str]]] = {}
    for key in groups:
        per_experiment.setdefault(key[0], []).append(key)
    out: dict[str, list[Run]] = {}
    for key, members in groups.items():
        siblings = per_experiment[key[0]]
        label = key[0]
        if len(siblings) > 1:
            others = [configs[k] for k in siblings if k != key]
            mine = configs[key]
            keys = sorted(
                k
                for k in set(mine).union(*others)
                if any(o.get(k, None) != mine.get(k, None) for o in others)
            )
            parts = [f"{k.split('.')[-1]}={_short(mine.get(k))}" for k in keys[:3]]
            label = f"{key[0]} [{', '.join(parts) or len(out)}]"
        while label in out:
            label += "'"
        out[label] = members
    return out


def _find_baseline(rows: list[Row], baseline: str | Path) -> Row:
    text = str(baseline)
    for r in rows:
        if r.label == text:
            return r
    hits = [r for r in rows if r.experiment == text]
    if not hits and Path(text).exists():
        target = Path(text).resolve()
        hits = [
            r
            for r in rows
            if any(
                run.path.resolve() == target or target in run.path.resolve().parents
                for run in r.runs
                if not str(run.path).startswith("wandb:")
            )
        ]
    if len(hits) != 1:
        raise ValueError(
            f"Baseline {text!r} matches {len(hits)} rows; rows: {[r.label for r in rows]}"
        )
    return hits[0]


def _stat(runs: Sequence[Run], metric: str, kind: str) -> Stat | None:
    values = [getattr(r, kind)(metric) for r in runs]
    return Stat.of(values, [r.diverged(metric) for r in runs])


def compare(
    runs: Sequence[Run], metrics: Sequence[str] = DEFAULT_METRICS, baseline: str | None = None
) -> Table:
    """The comparison table of runs grouped by config.

    Args:
        runs: From :func:`load_runs` (or :func:`load_wandb_runs`).
        metrics: Metric names as logged (``val/mIoU``, ``val/IoU/<class>``, ...).
        baseline: A row label, an experiment name or a run/experiment folder; adds
            :class:`Delta` per metric to every row.
    """
    metrics = list(metrics)
    check_metrics(runs, metrics)
    rows = []
    for label, members in group_runs(runs).items():
        params = [r.params for r in members if r.params is not None]
        rows.append(
            Row(
                label=label,
                experiment=members[0].experiment,
                runs=list(members),
                best={m: _stat(members, m, "best") for m in metrics},
                final={m: _stat(members, m, "final") for m in metrics},
                params=int(np.median(params)) if params else None,
                wall=Stat.of(r.wall_seconds for r in members),
            )
        )
    table = Table(metrics, rows)
    if baseline is not None:
        base = _find_baseline(rows, baseline)
        table.baseline = base.label
        for r in rows:
            r.delta = {
                m: paired_delta(
                    m, (r.label, r.runs, r.best.get(m)), (base.label, base.runs, base.best.get(m))
                )
                for m in metrics
            }
    return table


# --------------------------------------------------------------------------------- output
