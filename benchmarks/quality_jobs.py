"""``bench-quality --jobs N``: one process per architecture, run side by side, merged into one
report. Each process still interleaves seglab's and smp's steps itself, so its time ratios
stay measured alternately; only the wall time is shared.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent / "quality.py"


def child_argv(given: list[str], arch: str, lightning: bool, out: Path) -> list[str]:
    """The parent's options with one architecture, its product run or none, a JSON output."""
    argv, skip = [], False
    for token in given:
        if token.startswith("--"):
            skip = token.split("=")[0] in ("--archs", "--lightning-archs", "--jobs", "--json")
            if skip:
                continue
        elif skip:
            continue
        argv.append(token)
    return [*argv, "--archs", arch, "--lightning-archs", *([arch] if lightning else [])] + [
        "--jobs",
        "1",
        "--json",
        str(out),
    ]


def merge(
    parts: list[dict[str, Any]], command: str, wall_s: float, jobs: int | None
) -> dict[str, Any]:
    """One result from the per-architecture ones (architectures in the parent's order)."""
    first = parts[0]
    loads = [p["load_end"] for p in parts if p["load_end"]]
    archs = list(dict.fromkeys(a for p in parts for a in p["args"]["archs"]))
    return {
        **first,
        "args": {**first["args"], "archs": archs},
        "load_end": max(loads, key=max) if loads else None,
        "wall_s": wall_s,
        "command": command,
        "plain": [r for p in parts for r in p["plain"]],
        "flops": {k: v for p in parts for k, v in p["flops"].items()},
        "seglab_kwargs": {k: v for p in parts for k, v in p["seglab_kwargs"].items()},
        "seglab_models": {k: v for p in parts for k, v in p.get("seglab_models", {}).items()},
        "smp_kwargs": {k: v for p in parts for k, v in p.get("smp_kwargs", {}).items()},
        "product": [r for p in parts for r in p["product"]],
        "jobs": len(parts),
        "jobs_at_once": jobs,
    }


def merge_files(paths: list[Path], merge_command: str) -> dict[str, Any]:
    """One result from ``--json`` files of processes run side by side (``--merge``)."""
    parts = [json.loads(p.read_text()) for p in paths]
    command = " and ".join(p["command"] for p in parts) + f", merged by {merge_command}"
    res = merge(parts, command, max(p["wall_s"] for p in parts), None)
    res["machine"]["code"] = "; ".join(dict.fromkeys(p["machine"].get("code", "") for p in parts))
    lightning = (a for p in parts for a in p["args"]["lightning_archs"])
    res["args"]["lightning_archs"] = list(dict.fromkeys(lightning))
    return res


def run_jobs(args: argparse.Namespace, given: list[str], command: str, log=print) -> dict | None:
    """Runs ``args.archs`` in ``args.jobs`` processes at a time and merges their results."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        pending = [(a, Path(tmp) / f"{a}.json") for a in args.archs]
        running: list[tuple[subprocess.Popen, Path]] = []
        outputs = []
        while pending or running:
            while pending and len(running) < args.jobs:
                arch, out = pending.pop(0)
                argv = child_argv(given, arch, arch in args.lightning_archs, out)
                running.append((subprocess.Popen([sys.executable, str(SCRIPT), *argv]), out))
                outputs.append(out)
            time.sleep(2)
            for proc, out in list(running):
                if proc.poll() is not None:
                    running.remove((proc, out))
                    if proc.returncode:
                        raise RuntimeError(f"{out.stem}: the benchmark process failed")
        parts = [json.loads(p.read_text()) for p in outputs if p.exists()]
    if not parts:
        return None
    log(f"merged {len(parts)} processes")
    return merge(parts, command, time.perf_counter() - start, args.jobs)
