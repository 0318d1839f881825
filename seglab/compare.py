"""``seglab compare``: a table and plots of runs, grouped by config, mean +- std over seeds.

Command line::

    seglab compare runs/unet_* runs/deeplabv3/20261124-101500 \\
        --metrics val/mIoU val/dice --baseline unet --out compare/unet_vs_deeplab
    seglab compare 'runs/sweep_os__*' --format csv
    seglab compare --wandb-project my-team/seglab --metrics val/mIoU      # online W&B only

Each argument is a run folder (holding ``summary.json``), a folder searched recursively for
run folders (an experiment, or ``runs/``), or a glob (quote it to let seglab expand ``**``).

Grouping: runs share a row when they have the same experiment name and the same resolved
``config.yaml`` once the seed, the run paths and settings that do not change results
(``IGNORED_KEYS``) are left out, so the seeds of a sweep combination form one row. Two configs
under one experiment name get separate rows labelled with the keys that differ.

Each row gives, per metric, the best (over epochs) and the final value as mean +- std over the
row's runs (sample std, ddof 1; blank for one run), the parameter count and the wall time.
``--baseline NAME_OR_DIR`` (a row label, an experiment name or a run/experiment folder) adds
per metric the difference of the best-value means to the baseline row and a test:

* paired over cases where both rows' runs hold per-case scores in ``summary.json``: Wilcoxon
  signed-rank for 6 or more common cases, a paired t-test for 2-5 (per-case scores are first
  averaged over the row's seeds);
* otherwise, with 2 or more runs on both sides, Welch's t-test over the seeds' best values.

The test name, ``n`` (cases, or runs on both sides) and ``p`` are reported.

Per-case format (``summary.json``, written by ``seglab.runs.RunSummary`` from the task's
``per_case_scores``, e.g. the volumetric liver task)::

    "per_case": {"liver/dice": {"case_003": 0.951, "case_017": 0.932, ...},
                 "liver/hd95": {"case_003": 4.1, ...}}

A metric ``val/liver/dice_per_case`` (or ``val/liver/dice``, ``liver/dice``) finds the
``liver/dice`` scores: the stage prefix and a ``_per_case`` / ``_mean`` suffix are stripped.

Output: the table on stdout (``--format markdown`` or ``csv``); in ``--out`` (default
``runs/compare/``): ``table.md``, ``table.csv``, ``curves_<metric>.png`` (metric over epochs, mean
and std band per row, seeds thin) and ``bars_<metric>.png`` (best values, error bars = std).

Python API (notebooks)::

    from seglab.compare import load_runs, compare, to_markdown, plot_curves, plot_bars
    runs = load_runs(["runs/unet_*", "runs/deeplabv3"])
    table = compare(runs, ["val/mIoU"], baseline="unet")
    print(to_markdown(table)); table.row("unet").best["val/mIoU"].mean
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import math
import sys
from collections.abc import Iterable, Sequence
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
    if v is None or v == "":
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


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
        """The best value over epochs: ``summary.json`` ``best``, else from the curve."""
        v = _float((self.summary.get("best") or {}).get(metric))
        if v is not None:
            return v
        _, values = self.curve(metric)
        if not len(values):
            return None
        return float(values.min() if lower_is_better(metric) else values.max())

    def final(self, metric: str) -> float | None:
        """The last validated value: ``summary.json`` ``final``, else the curve's last."""
        v = _float((self.summary.get("final") or {}).get(metric))
        if v is not None:
            return v
        _, values = self.curve(metric)
        return float(values[-1]) if len(values) else None

    def cases(self, metric: str) -> dict[str, float]:
        """Per-case scores of a metric (see the module doc for the key rules)."""
        pc = self.per_case
        for key in _case_keys(metric):
            if key in pc and isinstance(pc[key], dict):
                return {str(c): float(v) for c, v in pc[key].items() if _float(v) is not None}
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

    Uses what ``seglab.wandb_logging`` logs: the dotted config, the group (experiment),
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
def _pm(s: Stat | None, digits: int = 4) -> str:
    if s is None:
        return "-"
    if s.n > 1:
        return f"{s.mean:.{digits}f} ± {s.std:.{digits}f}"
    return f"{s.mean:.{digits}f}"


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
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_bars(table: Table, metric: str, path: str | Path, which: str = "best") -> Path:
    """Bars of a metric's ``best`` (or ``final``) mean per config, error bars = std, dots =
    seeds; the baseline bar is hatched."""
    plt = _pyplot()
    rows = [r for r in table.rows if (r.best if which == "best" else r.final).get(metric)]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 2), 4.5), dpi=100)
    for i, r in enumerate(rows):
        s = (r.best if which == "best" else r.final)[metric]
        err = s.std if s.n > 1 else 0.0
        ax.bar(i, s.mean, yerr=err, capsize=4, color=f"C{i % 10}", alpha=0.8,
               hatch="//" if r.label == table.baseline else None)  # fmt: skip
        ax.scatter(np.full(s.n, i) + np.linspace(-0.15, 0.15, s.n), s.values, color="k", s=10,
                   zorder=3)  # fmt: skip
        ax.text(i, s.mean + err, f"{s.mean:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(rows)), [r.label for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{which} {metric}")
    ax.set_title(f"{which} {metric} (mean ± std over seeds)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
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
            if any(r.best.get(m) for r in table.rows):
                written.append(plot_bars(table, m, out / f"bars_{safe_name(m)}.png"))
    return written


# ------------------------------------------------------------------------------------ CLI
def main(argv: Sequence[str] | None = None) -> Table:
    """``seglab compare``; returns the table (for tests)."""
    p = argparse.ArgumentParser(
        prog="seglab compare",
        description="Compare runs: best/final metrics as mean ± std over seeds, plots.",
    )
    p.add_argument("runs", nargs="*", help="Run folders, folders of runs, or globs.")
    p.add_argument("--metrics", nargs="+", default=None, help="Default: val/mIoU val/dice.")
    p.add_argument("--baseline", default=None, help="Row label, experiment name or folder.")
    p.add_argument("--out", default="runs/compare", help="Folder for table.md/.csv, plots.")
    p.add_argument("--format", choices=("markdown", "csv"), default="markdown")
    p.add_argument("--wandb-project", default=None, help="ENTITY/PROJECT (W&B online).")
    p.add_argument("--no-plots", action="store_true", help="Skip the PNG plots.")
    p.add_argument("--finished-only", action="store_true", help="Leave out unfinished runs.")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    if not args.runs and not args.wandb_project:
        p.error("give run folders / globs, or --wandb-project")
    runs: list[Run] = load_runs(args.runs) if args.runs else []
    if args.wandb_project:
        runs += load_wandb_runs(args.wandb_project)
    if args.baseline and Path(args.baseline).exists():
        known = {r.path.resolve() for r in runs}
        runs += [r for r in load_runs([args.baseline]) if r.path.resolve() not in known]
    unfinished = [r for r in runs if r.status != "finished"]
    if args.finished_only:
        runs = [r for r in runs if r.status == "finished"]
    elif unfinished:
        print(f"note: {len(unfinished)} run(s) not finished, included", file=sys.stderr)
    metrics = args.metrics
    if metrics is None:
        metrics = [m for m in DEFAULT_METRICS if any(r.best(m) is not None for r in runs)]
        metrics = metrics or [runs[0].summary.get("monitor", "val/mIoU")]
    table = compare(runs, metrics, baseline=args.baseline)
    print(to_markdown(table) if args.format == "markdown" else to_csv(table), end="")
    written = write_outputs(table, runs, args.out, plots=not args.no_plots)
    print(f"wrote {', '.join(str(w) for w in written)}", file=sys.stderr)
    return table


if __name__ == "__main__":
    main()
