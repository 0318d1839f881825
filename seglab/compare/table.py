"""The comparison table: rows of runs grouped by config, mean +- std, tests to a baseline."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seglab.compare.runs import DEFAULT_METRICS, Run


# ---------------------------------------------------------------------------------- table
@dataclass
class Stat:
    """Mean and sample standard deviation (NaN for one value) of the runs' values."""

    mean: float
    std: float
    n: int
    values: list[float]

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat | None:
        vals = [float(v) for v in values if v is not None]
        if not vals:
            return None
        std = float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")
        return cls(float(np.mean(vals)), std, len(vals), vals)


@dataclass
class Delta:
    """Difference of a row's mean best value to the baseline's, and the test behind it."""

    diff: float
    test: str | None = None
    n: int | None = None
    p: float | None = None


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
                    rec[f"{m}/{kind}_std"] = s.std if s and s.n > 1 else None
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


def _paired(row: Row, base: Row, metric: str) -> Delta:
    from scipy import stats

    b_row, b_base = row.best.get(metric), base.best.get(metric)
    diff = (b_row.mean - b_base.mean) if b_row and b_base else float("nan")

    def case_means(runs: list[Run]) -> dict[str, float]:
        acc: dict[str, list[float]] = {}
        for run in runs:
            for case, v in run.cases(metric).items():
                acc.setdefault(case, []).append(v)
        return {c: float(np.mean(v)) for c, v in acc.items()}

    a, b = case_means(row.runs), case_means(base.runs)
    common = sorted(set(a) & set(b))
    if len(common) >= 2:
        x = np.array([a[c] for c in common])
        y = np.array([b[c] for c in common])
        if np.allclose(x, y):
            return Delta(diff, "paired (identical)", len(common), 1.0)
        if len(common) >= 6:
            p = float(stats.wilcoxon(x, y).pvalue)
            return Delta(diff, "wilcoxon", len(common), p)
        return Delta(diff, "paired t", len(common), float(stats.ttest_rel(x, y).pvalue))
    if b_row and b_base and b_row.n >= 2 and b_base.n >= 2:
        if np.std(b_row.values) == 0 and np.std(b_base.values) == 0:
            p = 1.0 if b_row.mean == b_base.mean else 0.0
        else:
            p = float(stats.ttest_ind(b_row.values, b_base.values, equal_var=False).pvalue)
        return Delta(diff, "welch (seeds)", b_row.n + b_base.n, p)
    return Delta(diff)


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
    rows = []
    for label, members in group_runs(runs).items():
        params = [r.params for r in members if r.params is not None]
        rows.append(
            Row(
                label=label,
                experiment=members[0].experiment,
                runs=list(members),
                best={m: Stat.of(r.best(m) for r in members) for m in metrics},
                final={m: Stat.of(r.final(m) for r in members) for m in metrics},
                params=int(np.median(params)) if params else None,
                wall=Stat.of(r.wall_seconds for r in members),
            )
        )
    table = Table(metrics, rows)
    if baseline is not None:
        base = _find_baseline(rows, baseline)
        table.baseline = base.label
        for r in rows:
            r.delta = {m: _paired(r, base, m) for m in metrics}
    return table


# --------------------------------------------------------------------------------- output
