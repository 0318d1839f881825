"""Quality on real data: seglab against smp on ISBI 2012, same loop, same everything else.

    make bench-quality          # == .venv/bin/python benchmarks/quality.py
    .venv/bin/python benchmarks/quality.py --steps 4 --seeds 1 --archs unet   # a smoke run

For each architecture and seed, seglab's model (its defaults) and smp's (its defaults) get the
same encoder from random init, the same initial seed, the same batches (one stream of random
crops, flips and rotations per seed), the same loss (seglab's ``SegLoss`` ce + dice, binary), the
same optimiser and schedule (seglab's ``build_optimizer``: AdamW, cosine, per step) and the same
steps. Their steps are interleaved (order reversed every step), so the time ratio is measured
alternately in the same run. Both are scored on the held-out images whole and cut into tiles of
the training crop. Then seglab's own product (``SegmentationTask`` + ``SegDataModule`` under
``Trainer.fit``) is trained for the same steps and compared the same way, smp's plain-loop steps
interleaved in the same fit. Skips (exit 0) when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.isbi import (
    CLASSES,
    DATA,
    NAME,
    SPLIT,
    Split,
    batches,
    evaluate,
    evaluations,
    load_split,
)
from benchmarks.quality_models import (  # noqa: F401 (the benchmark's names, re-exported)
    ADAPTIVE,
    LOSS,
    MODEL,
    SEGLAB_KWARGS,
    SMP_CLASSES,
    Side,
    build,
    hparams,
    seglab_options,
)
from benchmarks.timing import (
    RESULTS,
    command_line,
    load_average,
    logits_of,
    machine,
    n_params,
    quiet_lightning,
    train_flops,
    update_section,
)


def train_plain(arch: str, seed: int, split: Split, args: argparse.Namespace) -> dict[str, Any]:
    """Trains seglab's and smp's ``arch`` on one seed's stream, steps interleaved, and scores
    them.

    Each side keeps its own global-RNG stream (dropout), so one side's draws never depend on
    the other's model. The two share each batch, so drawing it is left out of their times.

    Returns:
        ``{"arch", "seed", "times": {side: [s per step]}, "scores": {side: {"whole": {...},
        "tiled": {...}}}, "params": {side: n}}``; times exclude the warm-up steps.
    """
    sides = ("seglab", "smp")
    models = {s: Side(s, arch, args, seed) for s in sides}
    stream = batches(split, args.batch, args.crop, seed, args.device)
    times: dict[str, list[float]] = {s: [] for s in sides}
    for i in range(args.steps):
        x, y = next(stream)
        for s in sides if i % 2 == 0 else sides[::-1]:
            seconds = models[s].step(x, y, i)
            if i >= args.warmup:
                times[s].append(seconds)
    scores = {
        s: {v: evaluate(m.model, split, t, args.device) for v, t in evaluations(args.crop)}
        for s, m in models.items()
    }
    return {
        "arch": arch,
        "seed": seed,
        "times": times,
        "scores": scores,
        "params": {s: n_params(m.model) for s, m in models.items()},
    }


def step_gflops(arch: str, args: argparse.Namespace) -> dict[str, float]:
    """Train GFLOPs of one step (forward, loss, backward) of each side, on a fresh model."""
    from seglab.losses import SegLoss

    loss_fn = SegLoss(LOSS, task="binary", num_classes=1).to(args.device)
    x = torch.zeros(args.batch, 1, args.crop, args.crop, device=args.device)
    y = torch.zeros(args.batch, args.crop, args.crop, dtype=torch.long, device=args.device)
    out = {}
    for side in ("seglab", "smp"):
        model = build(side, arch, args, 0)
        out[side] = train_flops(model, lambda m: loss_fn(logits_of(m(x)), y)[0]) / 1e9
    return out


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The options; the defaults are ``make bench-quality``'s run."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DATA), help="ISBI folder (train/images, train/masks).")
    p.add_argument("--archs", nargs="*", default=list(SMP_CLASSES), choices=list(SMP_CLASSES))
    p.add_argument(
        "--lightning-archs", nargs="*", default=["unet", "deeplabv3plus"], help="Product runs."
    )
    p.add_argument("--seeds", type=int, default=3, help="Seeds per architecture.")
    p.add_argument("--first-seed", type=int, default=0, help="Seeds first..first+N-1.")
    p.add_argument("--steps", type=int, default=100, help="Optimiser steps per run.")
    p.add_argument("--batch", type=int, default=4, help="Crops per step.")
    p.add_argument("--crop", type=int, default=128, help="Training crop = evaluation tile.")
    p.add_argument("--eval-crop", type=int, default=None, help="Score only a corner (tests).")
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--scheduler", default="cosine", choices=["cosine", "poly", "constant"])
    p.add_argument("--warmup", type=int, default=2, help="Steps left out of the timing.")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--section", default="quality", help="Report section to (re)write.")
    for side, example in (("seglab", "output_stride"), ("smp", "encoder_output_stride")):
        p.add_argument(
            f"--{side}-options",
            type=json.loads,
            default=None,
            help=f"More {side} options per architecture, JSON: "
            f'\'{{"deeplabv3": {{"{example}": 16}}}}\'.',
        )
    p.add_argument("--jobs", type=int, default=1, help="Architectures run side by side.")
    p.add_argument("--json", default=None, help="Write the measurements here (no report).")
    p.add_argument("--merge", nargs="+", default=None, help="Report from these --json files.")
    return p.parse_args(argv)


def run(args: argparse.Namespace, command: str, log=print) -> dict[str, Any] | None:
    """Runs the benchmark and writes its report section; None when the data is absent."""
    from benchmarks.quality_lightning import bench_lightning

    root = Path(args.data)
    if not (root / "train" / "images").is_dir():
        log(f"skipped: no ISBI data at {root} (train/images, train/masks); pass --data.")
        return None
    torch.set_num_threads(args.threads)
    quiet_lightning()
    start, info = time.perf_counter(), machine()
    split = load_split(root, args.eval_crop)
    log(f"{len(split.train)} training / {len(split.held)} held-out images; load {info['load']}")
    plain, flops = [], {}
    for arch in args.archs:
        flops[arch] = step_gflops(arch, args)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            r = train_plain(arch, seed, split, args)
            plain.append(r)
            sc = r["scores"]
            log(
                f"{arch} seed {seed}: mIoU whole {sc['seglab']['whole']['mIoU']:.3f} / "
                f"{sc['smp']['whole']['mIoU']:.3f}, tiled {sc['seglab']['tiled']['mIoU']:.3f} / "
                f"{sc['smp']['tiled']['mIoU']:.3f} (seglab / smp)"
            )
    product = bench_lightning(args, split, log)
    results = {
        "args": vars(args),
        "machine": info,
        "load_end": load_average(),
        "wall_s": time.perf_counter() - start,
        "command": command,
        "split": {"train": split.train_names, "held": split.held_names, "rule": SPLIT},
        "data_name": NAME,
        "classes": CLASSES,
        "loss": LOSS,
        "seglab_kwargs": seglab_options(args),
        "smp_kwargs": args.smp_options or {},
        "seglab_models": {k: v for k, v in MODEL.items() if k in args.archs},
        "smp_classes": SMP_CLASSES,
        "plain": plain,
        "flops": flops,
        "product": product,
    }
    write(args, results)
    log(f"wrote {args.json or args.out} ({results['wall_s'] / 60:.1f} min)")
    return results


def write(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The report section (not for a child of ``--jobs``) and the optional JSON."""
    from benchmarks.quality_report import render_quality

    if args.json:
        Path(args.json).write_text(json.dumps(results))
    else:
        update_section(Path(args.out), args.section, "\n".join(render_quality(results)))


def main(argv: list[str] | None = None) -> None:
    """``make bench-quality``."""
    given = sys.argv[1:] if argv is None else argv
    command = command_line("quality.py", given, target="bench-quality")
    args = parse(given)
    if args.merge:
        from benchmarks.quality_jobs import merge_files

        write(args, merge_files([Path(p) for p in args.merge], command))
    elif args.jobs > 1 and len(args.archs) > 1:
        from benchmarks.quality_jobs import run_jobs

        results = run_jobs(args, given, command)
        if results is not None:
            write(args, results)
    else:
        run(args, command)


if __name__ == "__main__":
    main()
