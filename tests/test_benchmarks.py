"""The benchmarks: reports hold only measured numbers, the harness pieces are right, and the
quality and GPU scripts run end to end at tiny sizes (quality: skipped without ../shared/data).
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks import gpu, isbi, quality
from benchmarks.data_pipeline import render_data
from benchmarks.loop import VARIANTS, render_loop
from benchmarks.models_vs_smp import render_models
from benchmarks.quality_report import render_quality
from benchmarks.timing import ratio_stats, update_section

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
#: A number standing alone in text (not part of a name such as resnet18, fp32, v3).
NUMBER = re.compile(r"(?<![\w.\-])[-+]?\d+(?:\.\d+)?")


# ------------------------------------------------------------------- fake measurements
def machine_info(rng: np.random.Generator) -> dict:
    v = lambda: ".".join(str(int(x)) for x in rng.integers(1, 99, 3))  # noqa: E731
    return {
        "cpu": "Fake CPU",
        "cores": int(rng.integers(2, 64)),
        "load": tuple(rng.uniform(0, 99, 3)),
        **{k: v() for k in ("python", "torch", "lightning", "smp", "timm")},
        "cuda": False,
        "gpu": None,
    }


def quality_results(rng: np.random.Generator) -> dict:
    archs = ["unet", "deeplabv3plus"]
    seeds = sorted(rng.choice(1000, 3, replace=False).tolist())

    def scores(base: float) -> dict:
        whole = {"mIoU": base + rng.uniform(0, 0.05), "dice/membrane": rng.uniform(0.1, 0.9)}
        tiled = {"mIoU": whole["mIoU"] - rng.uniform(0.1, 0.2)}  # always beyond the criterion
        return {"whole": whole, "tiled": tiled}

    def times() -> list[float]:
        return list(rng.uniform(0.1, 3.0, 5))

    plain = [
        {
            "arch": a,
            "seed": s,
            "times": {"seglab": times(), "smp": times()},
            "scores": {"seglab": scores(0.3), "smp": scores(0.6)},  # seglab below: notes
            "params": {"seglab": int(rng.integers(1e6, 5e7)), "smp": int(rng.integers(1e6, 5e7))},
        }
        for a in archs
        for s in seeds
    ]
    product = [
        {
            "arch": a,
            "seed": s,
            "lightning": {"times": times(), "scores": scores(0.3)},
            "smp": {"times": times(), "scores": scores(0.6)},
        }
        for a in archs
        for s in seeds
    ]
    names = lambda n: [str(x) for x in rng.choice(1000, n, replace=False)]  # noqa: E731
    return {
        "args": {
            "archs": archs,
            "steps": int(rng.integers(10, 999)),
            "batch": int(rng.integers(2, 64)),
            "crop": int(rng.integers(16, 999)),
            "eval_crop": int(rng.integers(16, 999)),
            "seeds": len(seeds),
            "encoder": "resnet18",
            "lr": float(rng.uniform(1e-4, 1e-2)),
            "weight_decay": float(rng.uniform(1e-5, 1e-3)),
            "scheduler": "cosine",
            "warmup": int(rng.integers(1, 99)),
            "threads": int(rng.integers(1, 99)),
            "device": "cpu",
        },
        "machine": machine_info(rng),
        "load_end": tuple(rng.uniform(0, 99, 3)),
        "wall_s": float(rng.uniform(60, 6000)),
        "command": f"`quality.py --steps {int(rng.integers(1, 999))}`",
        "split": {
            "train": names(int(rng.integers(10, 99))),
            "held": names(int(rng.integers(3, 9))),
            "rule": {"val_fraction": float(rng.uniform(0.1, 0.9)), "seed": int(rng.integers(99))},
        },
        "data_name": "Fake data",
        "classes": ("membrane", "cell"),
        "loss": {"ce": float(rng.uniform(0.1, 9)), "dice": float(rng.uniform(0.1, 9))},
        "seglab_kwargs": {"unet": {"aux_head": False}},
        "smp_classes": {"unet": "Unet", "deeplabv3plus": "DeepLabV3Plus"},
        "plain": plain,
        "flops": {a: {"seglab": rng.uniform(1, 99), "smp": rng.uniform(1, 99)} for a in archs},
        "product": product,
    }


def models_rows(rng: np.random.Generator) -> tuple[list[dict], argparse.Namespace]:
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    two = lambda lo, hi: (u(lo, hi), u(lo, hi))  # noqa: E731
    stride = int(rng.integers(2, 64))
    rows = [
        {
            "arch": "U-Net",
            "width": int(rng.integers(4, 64)),
            "seglab_call": ("unet", {"decoder_channels": [int(rng.integers(8, 512))]}),
            "smp_call": ("Unet", {"encoder_depth": int(rng.integers(3, 6))}),
            "stride": (stride, stride + 1),
            "params": two(1e6, 5e7),
            "step_s": two(0.1, 2),
            "time_ratio": (u(0.9, 1.1), u(0.5, 0.9), u(1.1, 1.5)),
            "enc_ratio": (u(0.9, 1.1), u(0.5, 0.9), u(1.1, 1.5)),
            "rest_ratio": u(0.5, 1.5),
            "enc_share": two(0.1, 0.9),
            "mem_mb": two(10, 999),
            "act_mb": two(10, 999),
            "gflops": two(1, 99),
        }
    ]
    args = argparse.Namespace(
        batch=int(rng.integers(2, 64)),
        size=int(rng.integers(16, 999)),
        encoder="resnet34",
        classes=int(rng.integers(2, 99)),
        threads=int(rng.integers(1, 99)),
        warmup=int(rng.integers(1, 99)),
        iters=int(rng.integers(4, 99)),
        loop_repeats=int(rng.integers(1, 99)),
    )
    return rows, args


def loop_rows(rng: np.random.Generator) -> list[dict]:
    med = {v: float(rng.uniform(0.001, 1)) for v in VARIANTS}
    spread = {v: (m * rng.uniform(0.5, 1), m * rng.uniform(1, 2)) for v, m in med.items()}
    case = f"case {int(rng.integers(1, 999))}"
    return [{"case": case, "steps": int(rng.integers(2, 999)), "median": med, "spread": spread}]


def data_result(rng: np.random.Generator) -> dict:
    return {
        "workers": int(rng.integers(0, 99)),
        "batch": int(rng.integers(1, 99)),
        "generate_ips": float(rng.uniform(1, 9999)),
        "cached_ips": float(rng.uniform(1, 9999)),
        "consumed_ips": float(rng.uniform(1, 9999)),
        "samples": int(rng.integers(1, 9999)),
        "dataset": "synthetic",
    }


def gpu_result(rng: np.random.Generator) -> tuple[dict, argparse.Namespace]:
    two = lambda lo, hi: {s: float(rng.uniform(lo, hi)) for s in ("seglab", "smp")}  # noqa: E731
    rows = [
        {
            "arch": "unet",
            "config": "bf16+cl",
            "precision": "bf16",
            "step_s": two(0.01, 1),
            "ips": two(1, 999),
            "ratio": tuple(rng.uniform(0.5, 1.5, 3)),
            "mem_mb": two(10, 9999),
            "first_s": two(0.1, 99),
            "flops": two(1e9, 1e12),
        }
    ]
    res = {
        "command": f"`gpu.py --iters {int(rng.integers(1, 99))}`",
        "wall_s": float(rng.uniform(1, 999)),
        "machine": machine_info(rng),
        "threads": int(rng.integers(1, 99)),
        "load_end": tuple(rng.uniform(0, 99, 3)),
        "peaks": {"bf16": float(rng.uniform(1e12, 1e15))},
        "tf32": True,
        "rows": rows,
        "skipped": [],
    }
    args = argparse.Namespace(
        size=int(rng.integers(16, 999)),
        encoder="resnet50",
        classes=int(rng.integers(2, 99)),
        batch=int(rng.integers(2, 99)),
        warmup=int(rng.integers(1, 99)),
        iters=int(rng.integers(1, 99)),
        matmul_size=int(rng.integers(16, 9999)),
        device="cuda",
    )
    return res, args


def quality_text(rng: np.random.Generator) -> str:
    """The quality report, the held-out names (a list of varying length) taken out."""
    res = quality_results(rng)
    text = "\n".join(render_quality(res, agree=float(rng.uniform(1, 9))))
    return text.replace(", ".join(res["split"]["held"]), "HELD")


RENDERERS = {
    "quality": quality_text,
    "models": lambda rng: "\n".join(render_models(*models_rows(rng))),
    "loop": lambda rng: "\n".join(render_loop(loop_rows(rng), models_rows(rng)[1])),
    "data": lambda rng: "\n".join(render_data(data_result(rng))),
    "gpu": lambda rng: gpu.render(*gpu_result(rng)),
}


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_every_number_in_a_report_comes_from_the_measurements(name):
    """Rendered from three different sets of fake measurements, no number may stay the same
    at the same place in all three: a fixed figure in the text would."""
    texts = [RENDERERS[name](np.random.default_rng(seed)) for seed in (1, 2, 3)]
    found = [NUMBER.findall(t) for t in texts]
    assert len(found[0]) > 5, texts[0]
    assert len({len(f) for f in found}) == 1, "the fakes should give the same structure"
    fixed = [a for a, b, c in zip(*found, strict=True) if a == b == c]
    assert fixed == [], f"fixed numbers in the {name} report: {fixed}\n{texts[0]}"


def string_literals_with_figures(path: Path) -> list[tuple[int, str]]:
    """Prose string literals holding a standalone number (docstrings, option help and defaults,
    format specs and bare numeric strings left out)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef) and body:
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                skip.add(id(body[0].value))
        if isinstance(node, ast.keyword) and node.arg in ("help", "default"):
            skip |= {id(n) for n in ast.walk(node.value)}
        if isinstance(node, ast.FormattedValue) and node.format_spec is not None:
            skip |= {id(n) for n in ast.walk(node.format_spec)}
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in skip
        and NUMBER.search(node.value)
        and re.search(r"[A-Za-z]{2}", node.value)
        and node.value != isbi.NAME  # the data set's name
    ]


def test_no_fixed_numeric_prose_in_the_benchmarks():
    """The grep of issue 18: no sentence in the benchmarks' code carries a figure of its own."""
    found = {
        p.name: hits
        for p in sorted(BENCH.glob("*.py"))
        if (hits := string_literals_with_figures(p))
    }
    assert found == {}
    results = (BENCH / "RESULTS.md").read_text()
    for old in ("with the second convolution removed", "Where the overhead is (measured"):
        assert old not in results  # the first round's pasted explanations


# ------------------------------------------------------------------------ the harness
def test_ratio_stats_against_hand_values():
    med, lo, hi = ratio_stats([2.0, 3.0, 8.0, 10.0, 5.0], [1.0, 1.0, 2.0, 2.0, 1.0])
    # ratios 2, 3, 4, 5, 5 -> median 4, quartiles (exclusive method) 2.5 and 5
    assert (med, lo, hi) == (4.0, 2.5, 5.0)


def test_update_section_keeps_the_other_sections(tmp_path):
    path = tmp_path / "R.md"
    update_section(path, "a", "first A")
    update_section(path, "b", "first B")
    update_section(path, "a", "second A")
    text = path.read_text()
    assert "second A" in text and "first B" in text and "first A" not in text
    assert text.index("second A") < text.index("first B")


def test_tiled_prediction_puts_every_tile_back_in_place():
    """A pointwise model (logits = the image) must give the same mask whole and tiled; a
    transposed or shuffled tile order would not."""
    image = torch.randn(1, 1, 96, 64)
    whole = isbi.predict(nn.Identity(), image, None)
    assert torch.equal(whole, image[0, 0] > 0)
    assert torch.equal(isbi.predict(nn.Identity(), image, 32), whole)
    with pytest.raises(ValueError, match="multiple of the 48 tile"):
        isbi.predict(nn.Identity(), image, 48)


def test_evaluate_against_torchmetrics():
    from torchmetrics.classification import MulticlassJaccardIndex

    rng = np.random.default_rng(0)
    held = [(rng.normal(size=(32, 32)).astype(np.float32), rng.integers(0, 2, (32, 32)))]
    split = isbi.Split([], held, [], ["x"])
    got = isbi.evaluate(nn.Identity(), split, None, "cpu")
    pred = torch.from_numpy(held[0][0] > 0).long()
    ref = MulticlassJaccardIndex(2, average="macro")(pred, torch.from_numpy(held[0][1]))
    assert got["mIoU"] == pytest.approx(float(ref), abs=1e-6)
    assert isbi.evaluate(nn.Identity(), split, 16, "cpu") == got


def test_augmentation_moves_image_and_mask_together_and_is_seeded():
    mask = np.random.default_rng(0).integers(0, 2, (40, 40))
    split = isbi.Split([(mask.astype(np.float32), mask)] * 4, [], [], [])
    a = [next(isbi.batches(split, 2, 16, seed)) for seed in (0, 0, 1)]
    assert torch.equal(a[0][0], a[1][0]) and not torch.equal(a[0][0], a[2][0])
    for x, y in a:
        assert x.shape == (2, 1, 16, 16) and torch.equal(x[:, 0].long(), y)


# ------------------------------------------------------------------ scripts end to end
def test_quality_benchmark_skips_without_data(tmp_path):
    args = quality.parse(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "R.md")])
    assert quality.run(args, "cmd", log=lambda _: None) is None
    assert not (tmp_path / "R.md").exists()


def test_quality_benchmark_tiny_run(shared_data, tmp_path):
    out = tmp_path / "R.md"
    argv = ["--data", str(shared_data / "isbi2012_membrane"), "--steps", "2", "--seeds", "1"]
    argv += ["--archs", "unet", "--lightning-archs", "unet", "--crop", "64", "--eval-crop", "128"]
    argv += ["--warmup", "0", "--out", str(out)]
    res = quality.run(quality.parse(argv), "cmd", log=lambda _: None)
    assert len(res["split"]["train"]) == 24 and len(res["split"]["held"]) == 6
    assert not set(res["split"]["train"]) & set(res["split"]["held"])
    (run,), (prod,) = res["plain"], res["product"]
    for side in ("seglab", "smp"):
        assert 0 <= run["scores"][side]["whole"]["mIoU"] <= 1 and len(run["times"][side]) == 2
    # same seed, same init, same batches: the rerun of smp in the product part is identical
    assert prod["smp"]["scores"] == run["scores"]["smp"]
    text = out.read_text()
    assert "<!-- bench:quality -->" in text and "Through seglab's task" in text


def test_gpu_script_on_the_cpu(tmp_path):
    out = tmp_path / "R.md"
    gpu.main(
        ["--device", "cpu", "--size", "32", "--batch", "2", "--iters", "1", "--warmup", "0"]
        + ["--archs", "unet", "--configs", "fp32", "fp16+cl+compile", "--classes", "2"]
        + ["--compile-backend", "eager", "--matmul-size", "32", "--matmul-reps", "1"]
        + ["--encoder", "resnet10t", "--smp-encoder", "tu-resnet10t", "--skip-quality"]
        + ["--budget-s", "1e9", "--out", str(out)]
    )
    text = out.read_text()
    for cfg in ("fp32", "fp16+cl+compile"):
        assert f"| unet | {cfg} | " in text
    assert "failed" not in text and "Not run" not in text
    with pytest.raises(ValueError, match="bf16"):
        gpu.Config.parse("bf17")


def test_jobs_give_each_process_one_architecture_and_merge_in_order():
    from benchmarks.quality_jobs import child_argv, merge

    argv = child_argv(
        ["--steps", "4", "--archs", "unet", "pspnet", "--jobs", "2"],
        "pspnet",
        False,
        Path("o.json"),
    )
    assert argv == [
        "--steps",
        "4",
        "--archs",
        "pspnet",
        "--lightning-archs",
        "--jobs",
        "1",
        "--json",
        "o.json",
    ]
    parts = [quality_results(np.random.default_rng(s)) for s in (1, 2)]
    for p, a in zip(parts, ("unet", "pspnet"), strict=True):
        p["args"]["archs"] = [a]
    res = merge(parts, "cmd", 1.0, 2)
    assert res["args"]["archs"] == ["unet", "pspnet"] and res["jobs"] == 2
    assert len(res["plain"]) == len(parts[0]["plain"]) + len(parts[1]["plain"])


def test_smp_options_reach_smp_and_the_report():
    import segmentation_models_pytorch as smp

    args = quality.parse(["--smp-options", '{"deeplabv3": {"encoder_output_stride": 16}}'])
    built = quality.build("smp", "deeplabv3", args, 0)
    torch.manual_seed(0)
    want = smp.DeepLabV3(
        "resnet18", encoder_weights=None, in_channels=1, classes=1, encoder_output_stride=16
    )
    x = torch.randn(1, 1, 64, 64)
    built.eval()
    want.eval()
    assert torch.equal(built.encoder(x)[-1], want.encoder(x)[-1])
    assert built.encoder(x)[-1].shape[-1] == 64 // 16
    from benchmarks.quality_report import smp_options

    res = {"smp_kwargs": args.smp_options}
    assert "encoder_output_stride" in smp_options(res, ["deeplabv3"])
    assert smp_options(res, ["unet"]) == ""


def test_adaptive_rows_are_their_rows_with_adaptive_bins():
    args = quality.parse([])
    options = quality.seglab_options(args)
    for row, base in quality.ADAPTIVE.items():
        assert options[row] == {**options[base], "pool_window": None}
    model = quality.build("seglab", "pspnet_smp_budget_adaptive", args, 0)
    assert not model.head.ppm.learns_window
    assert quality.build("seglab", "pspnet_smp_budget", args, 0).head.ppm.learns_window
    assert set(quality.ADAPTIVE).isdisjoint(gpu.parse([]).archs)
