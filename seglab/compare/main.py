"""``seglab compare``: the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from seglab.compare.render import to_csv, to_markdown, write_outputs
from seglab.compare.runs import DEFAULT_METRICS, Run, load_runs, load_wandb_runs
from seglab.compare.table import Table, compare


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
    try:
        table = compare(runs, metrics, baseline=args.baseline)
    except ValueError as err:  # an unknown metric, a paired test over unequal cases
        p.error(str(err))
    print(to_markdown(table) if args.format == "markdown" else to_csv(table), end="")
    written = write_outputs(table, runs, args.out, plots=not args.no_plots)
    print(f"wrote {', '.join(str(w) for w in written)}", file=sys.stderr)
    return table


if __name__ == "__main__":
    main()
