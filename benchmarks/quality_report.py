"""The quality benchmark's report section, rendered from its measurements alone.

Every number in the text comes from ``results`` (the run's measurements, options and machine);
the only figure written here is the agreement criterion, an option of the renderer.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from benchmarks.timing import machine_lines, mean_spread, ratio_stats

METRIC = "mIoU"


def seed_values(runs: list[dict], side: str, view: str, key: str = METRIC) -> list[float]:
    """One score per seed of ``side`` (``seglab`` / ``smp``) in ``view`` (whole / tiled)."""
    return [r["scores"][side][view][key] for r in runs]


def verdict(ours: list[float], ref: list[float]) -> str:
    """Whether seglab's paired difference over seeds is clear: beyond twice its standard
    error (a rough test for a handful of seeds), or unclear, with the numbers."""
    diffs = [a - b for a, b in zip(ours, ref, strict=True)]
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return f"difference {mean:+.3f} (one seed: spread unknown)"
    se = statistics.stdev(diffs) / math.sqrt(len(diffs))
    if abs(mean) <= 2 * se:
        return f"unclear: difference {mean:+.3f}, twice its standard error {2 * se:.3f}"
    return f"seglab {'higher' if mean > 0 else 'lower'}: difference {mean:+.3f} ± {se:.3f} (SE)"


def ms(values: list[float]) -> str:
    """``mean ± sd``."""
    m, sd = mean_spread(values)
    return f"{m:.3f} ± {sd:.3f}"


def ratio_text(ours: list[float], ref: list[float]) -> tuple[float, str]:
    """Mean of the per-seed ratios and ``mean [min, max]``."""
    ratios = [a / b if b else float("nan") for a, b in zip(ours, ref, strict=True)]
    m = statistics.fmean(ratios)
    return m, f"**{m:.3f}** [{min(ratios):.3f}, {max(ratios):.3f}]"


def points(whole: list[float], tiled: list[float]) -> str:
    """Mean whole-minus-tiled difference in points (hundredths)."""
    return f"{100 * statistics.fmean(w - t for w, t in zip(whole, tiled, strict=True)):+.1f}"


def runs(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run: the plain loop's, then the product's."""
    return [*res["plain"], *res["product"]]


def trained(res: dict[str, Any]) -> list[str]:
    """The architectures with a run, in order."""
    return list(dict.fromkeys(r["arch"] for r in runs(res)))


def setup_lines(res: dict[str, Any]) -> list[str]:
    """What was trained, how, on what."""
    a, split = res["args"], res["split"]
    loss = " + ".join(f"{w:g} x {n}" for n, w in res["loss"].items())
    models, archs = res.get("seglab_models", {}), trained(res)
    seg_kw = "; ".join(
        f"`{k}`" + (f" (seglab `{models[k]}`)" if k in models else "") + f": {v}"
        for k, v in res["seglab_kwargs"].items()
        if k in archs
    )
    smp = ", ".join(f"`{k}` = `smp.{c}`" for k, c in res["smp_classes"].items() if k in archs)
    seeds = ", ".join(str(s) for s in dict.fromkeys(r["seed"] for r in runs(res)))
    c = a["crop"]
    view = "whole" if a["eval_crop"] is None else f"top-left {a['eval_crop']}x{a['eval_crop']} of"
    return [
        f"{len(split['train'])} training and {len(split['held'])} held-out labelled images "
        f"(seglab's folder reader split: "
        + ", ".join(f"{k} {v}" for k, v in split["rule"].items())
        + f"; held out: {', '.join(split['held'])}); classes {', '.join(res['classes'])}, one "
        f"logit. {a['steps']} optimiser steps of {a['batch']} random {c}x{c} crops (flips and "
        "quarter turns, each with probability one half), seeds "
        f"{seeds}; encoder `{a['encoder']}` from random init in both; loss {loss} "
        f"(seglab's `SegLoss`, binary); AdamW lr {a['lr']:g}, weight decay "
        f"{a['weight_decay']:g}, {a['scheduler']} schedule per step (seglab's `build_optimizer` "
        f"on both sides); {a['device']}, {a['threads']} thread(s).",
        f"Models: each library's defaults ({smp}); seglab options set: {seg_kw or 'none'}"
        f"{smp_options(res, archs)} (the plain loop trains the main output only).",
        f"Scores on the held-out images ({view} each image): {METRIC} over the classes from one "
        f"confusion summed over all pixels, predicted whole and cut into {c}x{c} tiles "
        f"(the training crop); overlapping tiles: {c}x{c} windows a half window apart, their "
        "logits averaged (mmsegmentation's slide inference), which keeps the tiles' context "
        "but not their borders. Quality ratio = seglab / smp per seed, mean [min, max]. "
        "Time: the two models' steps interleaved in one process, order reversed every step; "
        f"ratio = median of the per-step ratios [interquartile range], the first {a['warmup']} "
        "steps left out.",
    ]


def smp_options(res: dict[str, Any], archs: list[str]) -> str:
    """``; smp options set: ...`` for the architectures given some, else nothing."""
    given = {k: v for k, v in res.get("smp_kwargs", {}).items() if k in archs and v}
    if not given:
        return ""
    return "; smp options set: " + "; ".join(f"`{k}`: {v}" for k, v in given.items())


def slide_points(runs: list[dict[str, Any]]) -> str:
    """Whole minus overlapping-tile points of both sides, or a dash when not measured."""
    if not all("slide" in r["scores"][s] for r in runs for s in ("seglab", "smp")):
        return "-"
    w = [seed_values(runs, s, "whole") for s in ("seglab", "smp")]
    o = [seed_values(runs, s, "slide") for s in ("seglab", "smp")]
    return f"{points(w[0], o[0])} / {points(w[1], o[1])}"


def slide_note(runs: list[dict[str, Any]], side: str) -> str:
    """The largest whole-minus-overlapping-tiles gap of ``side``, as a clause."""
    if not all("slide" in r["scores"][side] for r in runs):
        return ""
    w, o = seed_values(runs, side, "whole"), seed_values(runs, side, "slide")
    gap = max(abs(a - b) for a, b in zip(w, o, strict=True)) * 100
    return f"; whole and overlapping tiles by up to {gap:.1f}"


def plain_table(res: dict[str, Any], agree: float) -> list[str]:
    """The seglab-vs-smp table of the plain loop, and the sentences it calls for."""
    L = [
        f"| Architecture | Params M seglab / smp | Train GFLOPs per step seglab / smp | "
        f"{METRIC} whole seglab | {METRIC} whole smp | Quality ratio (whole) | Difference | "
        f"{METRIC} tiled seglab / smp | Whole - tiled (points) seglab / smp | "
        "Whole - overlapping tiles (points) seglab / smp | "
        f"Dice {res['classes'][0]} whole seglab / smp | Time ratio | s per step seglab / smp |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for arch in res["args"]["archs"]:
        runs = [r for r in res["plain"] if r["arch"] == arch]
        if not runs:
            continue
        sw, mw = seed_values(runs, "seglab", "whole"), seed_values(runs, "smp", "whole")
        st, mt = seed_values(runs, "seglab", "tiled"), seed_values(runs, "smp", "tiled")
        first = res["classes"][0]
        dice = [seed_values(runs, s, "whole", f"dice/{first}") for s in ("seglab", "smp")]
        ratio, rtext = ratio_text(sw, mw)
        ts = [t for r in runs for t in r["times"]["seglab"]]
        tm = [t for r in runs for t in r["times"]["smp"]]
        med, lo, hi = ratio_stats(ts, tm) if ts else (float("nan"),) * 3
        p, f = runs[0]["params"], res["flops"][arch]
        L.append(
            f"| {arch} | {p['seglab'] / 1e6:.2f} / {p['smp'] / 1e6:.2f} | "
            f"{f['seglab']:.2f} / {f['smp']:.2f} | {ms(sw)} | {ms(mw)} | {rtext} | "
            f"{verdict(sw, mw)} | {statistics.fmean(st):.3f} / {statistics.fmean(mt):.3f} | "
            f"{points(sw, st)} / {points(mw, mt)} | {slide_points(runs)} | "
            f"{statistics.fmean(dice[0]):.3f} / "
            f"{statistics.fmean(dice[1]):.3f} | **{med:.2f}** [{lo:.2f}, {hi:.2f}] | "
            f"{statistics.median(ts):.3f} / {statistics.median(tm):.3f} |"
        )
        if ratio < 1:
            notes.append(
                f"- seglab below smp on {arch}: {METRIC} {ms(sw)} against {ms(mw)} "
                f"(ratio {ratio:.3f}; {verdict(sw, mw)})."
            )
        for side, w, t in (("seglab", sw, st), ("smp", mw, mt)):
            gap = max(abs(a - b) for a, b in zip(w, t, strict=True)) * 100
            if gap > agree:
                notes.append(
                    f"- {side} {arch}: whole and tiled scores differ by up to {gap:.1f} points "
                    f"over the seeds (criterion: within {agree:g}){slide_note(runs, side)}."
                )
    return L + ([""] + notes if notes else [])


def product_table(res: dict[str, Any]) -> list[str]:
    """seglab's task and data module against smp's plain loop."""
    rows = res["product"]
    if not rows:
        return []
    L = [
        "\n### Through seglab's task and data module\n",
        "`SegmentationTask` (same model options, loss, optimiser, schedule) with `SegDataModule` "
        "(folder reader with `cache: true`, albumentations crop, flips and rotation, no loader "
        "workers) under "
        "`Trainer.fit` with validation, logging and checkpointing off, against smp in the plain "
        "loop on the same seed, its steps run inside the same `Trainer.fit` by a callback, one "
        "per Lightning step, before it on even steps and after it on odd ones, each side on its "
        "own random streams (so each trains as it would alone). Time ratio = median of the "
        "per-step ratios Lightning step / smp step over the seeds [interquartile range], the "
        f"first {res['args']['warmup']} steps left out; both include drawing and augmenting the "
        "step's batch: a Lightning step is timed from one batch end to the next less the smp "
        "step between them, an smp step from drawing its batch to its scheduler step.\n",
        f"| Architecture | {METRIC} whole seglab task | {METRIC} whole smp | Quality ratio | "
        f"Difference | {METRIC} tiled seglab task / smp | Whole - tiled (points) seglab task / "
        "smp | Time ratio | s per step seglab task / smp |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for arch in dict.fromkeys(r["arch"] for r in rows):
        runs = [r for r in rows if r["arch"] == arch]
        sw = [r["lightning"]["scores"]["whole"][METRIC] for r in runs]
        mw = [r["smp"]["scores"]["whole"][METRIC] for r in runs]
        st = [r["lightning"]["scores"]["tiled"][METRIC] for r in runs]
        mt = [r["smp"]["scores"]["tiled"][METRIC] for r in runs]
        tl = [t for r in runs for t in r["lightning"]["times"]]
        tp = [t for r in runs for t in r["smp"]["times"]]
        med, lo, hi = ratio_stats(tl, tp) if tl else (float("nan"),) * 3
        L.append(
            f"| {arch} | {ms(sw)} | {ms(mw)} | {ratio_text(sw, mw)[1]} | {verdict(sw, mw)} | "
            f"{statistics.fmean(st):.3f} / {statistics.fmean(mt):.3f} | {points(sw, st)} / "
            f"{points(mw, mt)} | **{med:.2f}** [{lo:.2f}, {hi:.2f}] "
            f"| {statistics.median(tl):.3f} / {statistics.median(tp):.3f} |"
        )
    return L


def seed_table(res: dict[str, Any]) -> list[str]:
    """Every run's scores, seed by seed."""
    L = [
        "\n<details><summary>Per seed</summary>\n",
        f"| Architecture | Seed | {METRIC} whole seglab / smp | {METRIC} tiled seglab / smp |",
        "|---|---:|---:|---:|",
    ]
    for r in runs(res):
        task = "lightning" in r
        s = {k: r[k]["scores"] for k in ("lightning", "smp")} if task else r["scores"]
        ours, name = ("lightning", f"{r['arch']} (task)") if task else ("seglab", r["arch"])
        L.append(
            f"| {name} | {r['seed']} | {s[ours]['whole'][METRIC]:.3f} / "
            f"{s['smp']['whole'][METRIC]:.3f} | {s[ours]['tiled'][METRIC]:.3f} / "
            f"{s['smp']['tiled'][METRIC]:.3f} |"
        )
    return L + ["\n</details>"]


def jobs_text(res: dict[str, Any]) -> str:
    """How the run was split into processes, if it was."""
    if not res.get("jobs"):
        return ""
    if res.get("jobs_at_once") is None:
        if res["jobs"] == 1:
            return " (the time of the --json run, merged)"
        return f" (the longest of {res['jobs']} processes run side by side, merged)"
    return f" ({res['jobs']} processes, one per architecture, {res['jobs_at_once']} at a time)"


def render_quality(res: dict[str, Any], agree: float = 2.0) -> list[str]:
    """The whole section. ``agree``: whole and tiled scores should agree within these points."""
    L = [
        f"## Quality on {res['data_name']}: seglab against smp, same loop and steps\n",
        f"Generated by {res['command']} in {res['wall_s'] / 60:.1f} min{jobs_text(res)}.\n",
    ]
    L += machine_lines(res["machine"], res["args"]["threads"], res["load_end"]) + [""]
    L += [line + "\n" for line in setup_lines(res)]
    L += plain_table(res, agree) if res["plain"] else []
    L += product_table(res)
    L += seed_table(res)
    return L + [""]
