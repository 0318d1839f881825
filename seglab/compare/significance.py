"""Tests behind a comparison's deltas: paired over cases, Welch over seeds; metric checks."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seglab.compare.runs import Run

#: ``(label, runs, best Stat or None)`` of one row of the table.
Side = tuple[str, Sequence[Run], Any]


@dataclass
class Delta:
    """Difference of a row's mean best value to the baseline's, and the test behind it."""

    diff: float
    test: str | None = None
    n: int | None = None
    p: float | None = None


def _case_table(runs: list[Run], metric: str) -> dict[str, dict[str, float]]:
    """``{run name: {case: score}}`` of the runs that hold per-case scores of the metric."""
    return {run.name: cases for run in runs if (cases := run.cases(metric))}


def _check_same_cases(metric: str, row: Side, base: Side) -> list[str]:
    """The cases every run of both rows scored; refuses runs that miss some, naming them."""
    runs = [*row[1], *base[1]]
    tables = _case_table(runs, metric)
    every = set().union(*tables.values())
    missing = {name: sorted(every - set(c)) for name, c in tables.items() if every - set(c)}
    missing |= {r.name: ["all"] for r in runs if r.name not in tables}
    if missing:
        listed = "; ".join(f"{name}: {cases[:10]}" for name, cases in sorted(missing.items()))
        raise ValueError(
            f"Paired test of {metric} ({row[0]} against {base[0]}) refused: cases "
            f"missing on one side: {listed}. Score every run on the same cases (the same "
            "validation split), or compare rows that share them."
        )
    return sorted(every)


def paired_delta(metric: str, row: Side, base: Side) -> Delta:
    """The difference of the best-value means of ``row`` to ``base`` and the test behind it.

    Args:
        metric: The metric name.
        row: ``(label, runs, best Stat)`` of the row.
        base: The same of the baseline row.

    Raises:
        ValueError: When both rows hold per-case scores but some run misses cases.
    """
    from scipy import stats

    b_row, b_base = row[2], base[2]
    diff = (b_row.mean - b_base.mean) if b_row and b_base else float("nan")
    if any(r.diverged(metric) for r in (*row[1], *base[1])):
        return Delta(diff, "not tested: diverged run(s)")

    def case_means(runs: list[Run]) -> dict[str, float]:
        acc: dict[str, list[float]] = {}
        for run in runs:
            for case, v in run.cases(metric).items():
                acc.setdefault(case, []).append(v)
        return {c: float(np.mean(v)) for c, v in acc.items()}

    a, b = case_means(row[1]), case_means(base[1])
    if a and b:
        common = _check_same_cases(metric, row, base)
        x = np.array([a[c] for c in common])
        y = np.array([b[c] for c in common])
        if len(common) < 2:
            return Delta(diff, "paired (1 case)", len(common))
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


def check_metrics(runs: Sequence[Run], metrics: Sequence[str]) -> None:
    """Refuses a metric that no run holds, naming the closest names the runs do hold."""
    known = sorted(set().union(*(r.metric_names() for r in runs)))
    for m in metrics:
        if not any(r.has(m) for r in runs):
            close = difflib.get_close_matches(m, known, n=3, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(
                f"No run holds the metric {m!r}.{hint} The runs hold: {known[:20]}"
                f"{' ...' if len(known) > 20 else ''}."
            )
