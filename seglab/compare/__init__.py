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

The test name, ``n`` (cases, or runs on both sides) and ``p`` are reported. A paired test
over cases refuses (``ValueError`` naming the runs and cases) when some run misses cases the
others scored: it never silently tests the intersection.

Diverged runs: a NaN or Inf value (in ``summary.json``, a ``metrics.csv`` epoch or a per-case
score) is kept, not dropped. The run counts as diverged for that metric; the cell shows the mean
of the finite values with ``⚠ k/n diverged`` (``diverged (n/n)`` when none is finite), the CSV
has a ``<metric>/<best|final>_diverged`` count, and no test is run against a row with a
diverged run (``not tested: diverged run(s)``).

A metric that no run holds is refused, naming the closest metric names the runs do hold.

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

from seglab.compare.main import main
from seglab.compare.render import plot_bars, plot_curves, to_csv, to_markdown, write_outputs
from seglab.compare.runs import DEFAULT_METRICS, Run, flatten, load_runs, load_wandb_runs
from seglab.compare.table import Delta, Row, Stat, Table, compare, group_runs

__all__ = [
    "DEFAULT_METRICS",
    "Delta",
    "Row",
    "Run",
    "Stat",
    "Table",
    "compare",
    "flatten",
    "group_runs",
    "load_runs",
    "load_wandb_runs",
    "main",
    "plot_bars",
    "plot_curves",
    "to_csv",
    "to_markdown",
    "write_outputs",
]
