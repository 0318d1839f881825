"""Rendering a comparison: markdown, CSV, curve and bar plots, the output folder."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seglab.compare.runs import Run
from seglab.compare.table import Stat, Table, group_runs


def _pm(s: Stat | None, digits: int = 4) -> str:
    """``mean ± std``; runs that diverged are counted in the cell, never dropped silently."""
    if s is None:
        return "-"
    if not s.finite:
        return f"diverged ({s.diverged}/{s.n})"
    text = f"{s.mean:.{digits}f}"
    if len(s.finite) > 1:
        text += f" ± {s.std:.{digits}f}"
    if s.diverged:
        text += f" ⚠ {s.diverged}/{s.n} diverged"
    return text


def _params(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n:,}"


def to_markdown(table: Table) -> str:
    """The table as GitHub Markdown (mean ± std over seeds, 4 decimals)."""
    head = ["config", "runs", "seeds"]
    for m in table.metrics:
        head += [f"best {m}", f"final {m}"]
        if table.baseline is not None:
            head += [f"Δ best {m}", f"p {m} (test, n)"]
    head += ["params", "wall [s]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.rows:
        label = r.label + (" (baseline)" if r.label == table.baseline else "")
        cells = [label.replace("|", "\\|"), str(len(r.runs)), " ".join(map(str, r.seeds))]
        for m in table.metrics:
            cells += [_pm(r.best.get(m)), _pm(r.final.get(m))]
            if table.baseline is not None:
                d = r.delta.get(m)
                if d is None or r.label == table.baseline:
                    cells += ["-", "-"]
                else:
                    cells.append(f"{d.diff:+.4f}" if math.isfinite(d.diff) else "-")
                    cells.append(f"{d.p:.3g} ({d.test}, n={d.n})" if d.p is not None else "-")
        cells += [_params(r.params), _pm(r.wall, 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(table: Table, path: str | Path | None = None) -> str:
    """The table as CSV (full precision); written to ``path`` when given, and returned."""
    import io

    records = table.records()
    buf = io.StringIO()
    if records:
        writer = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    text = buf.getvalue()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    return text


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(runs: Sequence[Run], metric: str, path: str | Path) -> Path:
    """A metric over epochs: per config the mean over seeds with a ±std band, seeds thin."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, members) in enumerate(group_runs(runs).items()):
        colour = colours[i % len(colours)]
        per_epoch: dict[int, list[float]] = {}
        for run in members:
            epochs, values = run.curve(metric)
            if len(members) > 1 and len(epochs):
                ax.plot(epochs, values, color=colour, alpha=0.3, linewidth=0.8)
            for e, v in zip(epochs.tolist(), values.tolist()):
                per_epoch.setdefault(e, []).append(v)
        if not per_epoch:
            continue
        xs = np.array(sorted(per_epoch))
        mean = np.array([np.mean(per_epoch[e]) for e in xs])
        std = np.array([np.std(per_epoch[e], ddof=1) if len(per_epoch[e]) > 1 else 0 for e in xs])
        ax.plot(xs, mean, color=colour, linewidth=2, marker="o", markersize=3,
                label=f"{label} (n={len(members)})")  # fmt: skip
        if len(members) > 1:
            ax.fill_between(xs, mean - std, mean + std, color=colour, alpha=0.15)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} over epochs (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_bars(table: Table, metric: str, path: str | Path, which: str = "best") -> Path:
    """Bars of a metric's ``best`` (or ``final``) mean per config, error bars = std, dots =
    seeds; the baseline bar is hatched."""
    plt = _pyplot()
    stats = [(r, (r.best if which == "best" else r.final).get(metric)) for r in table.rows]
    rows = [r for r, s in stats if s is not None and s.finite]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 2), 4.5), dpi=100)
    for i, r in enumerate(rows):
        s = (r.best if which == "best" else r.final)[metric]
        values = s.finite
        err = s.std if len(values) > 1 else 0.0
        ax.bar(i, s.mean, yerr=err, capsize=4, color=f"C{i % 10}", alpha=0.8,
               hatch="//" if r.label == table.baseline else None)  # fmt: skip
        ax.scatter(np.full(len(values), i) + np.linspace(-0.15, 0.15, len(values)), values,
                   color="k", s=10, zorder=3)  # fmt: skip
        mark = f" ({s.diverged} diverged)" if s.diverged else ""
        ax.text(i, s.mean + err, f"{s.mean:.3f}{mark}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(rows)), [r.label for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{which} {metric}")
    ax.set_title(f"{which} {metric} (mean ± std over seeds)")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    """Lays out, writes (creating the folder) and closes a figure."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    _pyplot().close(fig)
    return path


def safe_name(metric: str) -> str:
    """A metric name as a file-name part: ``val/IoU/disc`` -> ``val_IoU_disc``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in metric)


def write_outputs(
    table: Table, runs: Sequence[Run], out: str | Path, plots: bool = True
) -> list[Path]:
    """Writes ``table.md``, ``table.csv`` and the plots of every metric into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(to_markdown(table))
    to_csv(table, out / "table.csv")
    written = [out / "table.md", out / "table.csv"]
    if plots:
        for m in table.metrics:
            if any(len(r.curve(m)[0]) for r in runs):
                written.append(plot_curves(runs, m, out / f"curves_{safe_name(m)}.png"))
            if any((s := r.best.get(m)) is not None and s.finite for r in table.rows):
                written.append(plot_bars(table, m, out / f"bars_{safe_name(m)}.png"))
    return written
