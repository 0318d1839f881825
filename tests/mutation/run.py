"""``make test-mutate``: break chosen lines of the losses, metrics and volume evaluator one at a
time and check that the tests guarding them fail.

Each mutant replaces one exact snippet of one file. The script copies the working tree (tracked
and untracked, not ignored files) into a temporary folder and mutates only that copy, so the
checkout is never touched: an interrupted run (Ctrl-C, a crash) leaves nothing to restore, and
the copy is deleted on the way out. The copy is put first on ``PYTHONPATH`` and the script checks
that ``seglab`` is imported from it.

Usage::

    python tests/mutation/run.py                 # every mutant; exit 1 if one survives
    python tests/mutation/run.py --list          # the mutants
    python tests/mutation/run.py --only dice_empty hd95_max

A mutant is *killed* when its tests fail (any non-zero exit) and *survives* when they pass. A
mutant whose snippet is not found (the code moved) is reported as an error: update its entry.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutant:
    """One change: ``old`` (exactly once in ``file``) becomes ``new``; ``tests`` must fail."""

    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


LOSS_TESTS = ("tests/test_losses.py", "tests/test_loss_values.py")
METRIC_TESTS = ("tests/test_metrics.py", "tests/test_multilabel.py")
VOLUME_TESTS = ("tests/test_volume_metrics.py", "tests/test_volume_structures.py")

MUTANTS = (
    Mutant(
        "ignore_index_kept",
        "seglab/losses/core.py",
        "        return target != self.ignore_index\n",
        "        return torch.ones_like(target, dtype=torch.bool)\n",
        LOSS_TESTS,
    ),
    Mutant(
        "ce_class_weight_norm",
        "seglab/losses/core.py",
        "return num.sum() / wc.sum().clamp_min(1e-12)",
        "return num.sum() / per.numel()",
        LOSS_TESTS,
    ),
    Mutant(
        "wce_pixel_weight_dropped",
        "seglab/losses/core.py",
        "num = num * pixel_w.reshape(*([1] * (per.ndim - 1)), -1)",
        "num = num",
        LOSS_TESTS,
    ),
    Mutant(
        "term_weights_ignored",
        "seglab/losses/core.py",
        "total = sum(self.terms[n] * v for n, v in parts.items())",
        "total = sum(v for n, v in parts.items())",
        LOSS_TESTS,
    ),
    Mutant(
        "region_sum_not_mean",
        "seglab/losses/core.py",
        "return torch.stack(losses).mean()",
        "return torch.stack(losses).sum()",
        LOSS_TESTS,
    ),
    Mutant(
        "jaccard_is_dice",
        "seglab/losses/core.py",
        "return smp.losses.JaccardLoss(mode, from_logits=True, **kwargs)",
        "return smp.losses.DiceLoss(mode, from_logits=True, **kwargs)",
        LOSS_TESTS,
    ),
    Mutant(
        "iou_loss_union",
        "seglab/losses/hybrid.py",
        "union = (prob + tgt - prob * tgt).sum(dim=(-2, -1))",
        "union = (prob + tgt).sum(dim=(-2, -1))",
        ("tests/test_hybrid_loss.py",),
    ),
    Mutant(
        "metric_ignore_index_kept",
        "seglab/metrics/segmentation.py",
        "            valid = target != self.ignore_index\n",
        "            valid = target == target\n",
        METRIC_TESTS,
    ),
    Mutant(
        "miou_counts_absent_classes",
        "seglab/metrics/segmentation.py",
        '"mIoU": iou[present].mean() if present.any() else torch.tensor(1.0),',
        '"mIoU": iou.mean(),',
        METRIC_TESTS,
    ),
    Mutant(
        "multilabel_pixel_acc",
        "seglab/metrics/segmentation.py",
        "pixel_acc = (tp + tn).sum() / cm.sum().clamp_min(1)",
        "pixel_acc = tp.sum() / cm.sum().clamp_min(1)",
        METRIC_TESTS,
    ),
    Mutant(
        "dice_empty",
        "seglab/metrics/volume.py",
        "    if denom == 0:\n        return 1.0\n",
        "    if denom == 0:\n        return 0.0\n",
        VOLUME_TESTS,
    ),
    Mutant(
        "hd95_max",
        "seglab/metrics/volume.py",
        "return float(np.percentile(np.concatenate([a, b]), 95))",
        "return float(np.percentile(np.concatenate([a, b]), 100))",
        VOLUME_TESTS,
    ),
    Mutant(
        "evaluator_global_dice",
        "seglab/metrics/volume_evaluator.py",
        'out[f"{name}/dice_global"] = 2.0 * inter / denom if denom else 1.0',
        'out[f"{name}/dice_global"] = inter / denom if denom else 1.0',
        VOLUME_TESTS,
    ),
    Mutant(
        "evaluator_slice_order",
        "seglab/metrics/volume_evaluator.py",
        'order = sorted(entry["slices"])',
        'order = list(entry["slices"])',
        VOLUME_TESTS,
    ),
    Mutant(
        "evaluator_tumor_in_liver",
        "seglab/metrics/volume.py",
        'STRUCTURES = {"liver": lambda v: v >= 1,',
        'STRUCTURES = {"liver": lambda v: v == 1,',
        VOLUME_TESTS,
    ),
)


def copy_tree(dst: Path) -> None:
    """Copies the checkout's tracked and untracked (not ignored) files into ``dst``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for rel in filter(None, (p.decode() for p in listed)):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    shared = REPO.parent / "shared"
    if shared.is_dir() and not (dst.parent / "shared").exists():
        (dst.parent / "shared").symlink_to(shared)  # conftest's ../shared/data, read-only


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str]:
    """Runs pytest in the copy (``-x``); returns the exit code and the output's tail."""
    env = os.environ | {
        "PYTHONPATH": str(copy),
        "WANDB_MODE": "offline",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        proc = subprocess.run(
            cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return 124, "timed out"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    failed = [line.split(" - ")[0] for line in lines if line.startswith(("FAILED ", "ERROR "))]
    return proc.returncode, "\n".join(failed[:1] + lines[-1:])


def check_import(copy: Path) -> None:
    """Makes sure the copy's ``seglab`` is the one the tests import."""
    env = os.environ | {"PYTHONPATH": str(copy)}
    out = subprocess.run(
        [sys.executable, "-c", "import seglab; print(seglab.__file__)"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(out).resolve().is_relative_to(copy.resolve()):
        raise SystemExit(f"seglab is imported from {out}, not from the copy {copy}; stopping.")


def mutate(copy: Path, m: Mutant) -> str:
    """Applies ``m`` to the copy; returns the original text (to restore)."""
    path = copy / m.file
    text = path.read_text()
    if text.count(m.old) != 1:
        raise LookupError(f"{m.file}: the snippet of {m.name} occurs {text.count(m.old)} times")
    path.write_text(text.replace(m.old, m.new))
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", default=None, help="Mutant names to run.")
    p.add_argument("--list", action="store_true", help="List the mutants and exit.")
    p.add_argument("--timeout", type=float, default=300, help="Seconds per test run.")
    args = p.parse_args(argv)
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:28s} {m.file}: {m.old.strip()!r} -> {m.new.strip()!r}")
        return 0
    chosen = [m for m in MUTANTS if args.only is None or m.name in args.only]
    unknown = set(args.only or ()) - {m.name for m in MUTANTS}
    if unknown:
        p.error(f"unknown mutant(s) {sorted(unknown)}; see --list")
    tmp = Path(tempfile.mkdtemp(prefix="seglab-mutate-"))
    copy = tmp / "main"
    killed, survived, errors = [], [], []
    began = time.monotonic()
    try:
        copy_tree(copy)
        check_import(copy)
        tests = tuple(sorted({t for m in chosen for t in m.tests}))
        code, tail = run_tests(copy, tests, args.timeout)
        if code != 0:
            print(f"the unmutated tests fail; fix them first:\n{tail}")
            return 2
        for m in chosen:
            start = time.monotonic()
            try:
                original = mutate(copy, m)
            except LookupError as err:
                errors.append(m.name)
                print(f"ERROR    {m.name}: {err}")
                continue
            try:
                code, tail = run_tests(copy, m.tests, args.timeout)
            finally:
                (copy / m.file).write_text(original)
            verdict = "killed" if code != 0 else "SURVIVED"
            (killed if code != 0 else survived).append(m.name)
            shown = " | ".join(tail.splitlines())
            print(f"{verdict:8s} {m.name:28s} {time.monotonic() - start:5.1f} s  {shown}")
    except KeyboardInterrupt:
        print("interrupted; the checkout was never modified")
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = len(killed) + len(survived)
    print(f"kill rate: {len(killed)}/{total} mutants killed", end="")
    print(f"; survived: {survived}" if survived else "", end="")
    print(f"; {len(errors)} not applied: {errors}" if errors else "", end="")
    print(f" ({time.monotonic() - began:.0f} s)")
    return 0 if not survived and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
