"""``seglab compare`` on run folders of real short fits (2 configs x 2 seeds)."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from seglab.cli import run_cli
from seglab.compare import compare, load_runs, main, plot_bars, plot_curves, to_markdown
from tests.conftest import tiny_args

REPO = Path(__file__).resolve().parents[1]
TINY = [
    *tiny_args(),
    "--trainer.max_epochs=2",
    "--run.num_overlays=0",
]
CONFIGS = {"lr_small": "0.003", "lr_big": "0.03"}


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compare") / "runs"
    for name, lr in CONFIGS.items():
        for seed in (0, 1):
            os.environ.pop("SEGLAB_RUN_DIR", None)  # each fit its own folder
            run_cli(
                [
                    "fit",
                    "--config",
                    str(REPO / "experiments" / "default.yaml"),
                    f"--run.root={root}",
                    f"--run.experiment={name}",
                    f"--model.init_args.lr={lr}",
                    f"--seed_everything={seed}",
                    *TINY,
                ]
            )
    os.environ.pop("SEGLAB_RUN_DIR", None)
    return root


def summaries(root: Path, name: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((root / name).glob("*/summary.json"))]


def test_table_equals_the_summaries(runs_root):
    runs = load_runs([str(runs_root / "lr_*")])
    assert len(runs) == 4
    table = compare(runs, ["val/mIoU", "val/dice"])
    assert sorted(r.label for r in table.rows) == ["lr_big", "lr_small"]
    for name in CONFIGS:
        row, sums = table.row(name), summaries(runs_root, name)
        assert sorted(row.seeds) == [0, 1]
        for metric in ("val/mIoU", "val/dice"):
            for kind in ("best", "final"):
                values = [s[kind][metric] for s in sums]
                stat = getattr(row, kind)[metric]
                assert stat.n == 2
                assert stat.mean == pytest.approx(np.mean(values), abs=1e-12)
                assert stat.std == pytest.approx(np.std(values, ddof=1), abs=1e-12)
        assert row.params == sums[0]["params"]
        assert row.wall.mean == pytest.approx(np.mean([s["wall_seconds"] for s in sums]))
    md = to_markdown(table)
    small = table.row("lr_small").best["val/mIoU"]
    assert f"{small.mean:.4f} ± {small.std:.4f}" in md


def test_cli_writes_tables_and_plots(runs_root, tmp_path, capsys):
    out = tmp_path / "out"
    table = main([str(runs_root), "--out", str(out), "--baseline", "lr_small", "--format", "csv"])
    printed = capsys.readouterr().out
    for name in ("table.md", "table.csv", "curves_val_mIoU.png", "bars_val_mIoU.png",
                 "curves_val_dice.png", "bars_val_dice.png"):  # fmt: skip
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
    assert (out / "curves_val_mIoU.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {r["config"]: r for r in csv.DictReader(open(out / "table.csv"))}
    assert printed.startswith("config,experiment,runs,seeds")
    for name in CONFIGS:
        sums = summaries(runs_root, name)
        mean = np.mean([s["best"]["val/mIoU"] for s in sums])
        assert float(rows[name]["val/mIoU/best_mean"]) == pytest.approx(mean, rel=1e-12)
    big, small = table.row("lr_big"), table.row("lr_small")
    delta = big.delta["val/mIoU"]
    assert delta.diff == pytest.approx(big.best["val/mIoU"].mean - small.best["val/mIoU"].mean)
    assert delta.test == "welch (seeds)" and delta.n == 4
    expected = stats.ttest_ind(
        [s["best"]["val/mIoU"] for s in summaries(runs_root, "lr_big")],
        [s["best"]["val/mIoU"] for s in summaries(runs_root, "lr_small")],
        equal_var=False,
    ).pvalue
    assert delta.p == pytest.approx(expected, rel=1e-9)


def test_paired_test_over_cases(runs_root, tmp_path):
    """Per-case scores in summary.json give a paired Wilcoxon test over the common cases."""
    rng = np.random.default_rng(0)
    cases = [f"case_{i:03d}" for i in range(8)]
    base_scores = rng.uniform(0.8, 0.9, len(cases))
    for name, shift in (("lr_small", 0.0), ("lr_big", 0.02)):
        for seed_i, src in enumerate(sorted((runs_root / name).glob("*"))):
            dst = tmp_path / "runs" / name / src.name
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints"))
            summary = json.loads((dst / "summary.json").read_text())
            noise = 0.001 * seed_i
            scores = base_scores + shift + noise + rng.normal(0, 0.005, len(cases))
            summary["per_case"] = {"liver/dice": dict(zip(cases, scores.tolist()))}
            summary["final"]["val/liver/dice_per_case"] = float(scores.mean())
            summary["best"]["val/liver/dice_per_case"] = float(scores.mean())
            (dst / "summary.json").write_text(json.dumps(summary))
    runs = load_runs(tmp_path / "runs")
    table = compare(runs, ["val/liver/dice_per_case"], baseline=str(tmp_path / "runs/lr_small"))
    assert table.baseline == "lr_small"

    def case_means(name):
        per = [r.cases("val/liver/dice_per_case") for r in runs if r.experiment == name]
        return np.array([np.mean([p[c] for p in per]) for c in cases])

    delta = table.row("lr_big").delta["val/liver/dice_per_case"]
    expected = stats.wilcoxon(case_means("lr_big"), case_means("lr_small")).pvalue
    assert delta.test == "wilcoxon" and delta.n == 8
    assert delta.p == pytest.approx(expected)
    assert "wilcoxon, n=8" in to_markdown(table)


def test_configs_sharing_an_experiment_name_are_separate_rows(runs_root, tmp_path):
    src = sorted((runs_root / "lr_small").glob("*"))
    for i, s in enumerate(src):
        dst = tmp_path / "runs" / "shared" / s.name
        shutil.copytree(s, dst, ignore=shutil.ignore_patterns("checkpoints"))
        summary = json.loads((dst / "summary.json").read_text())
        summary["experiment"] = "shared"
        (dst / "summary.json").write_text(json.dumps(summary))
        if i == 1:  # a different lr under the same name
            cfg = yaml.safe_load((dst / "config.yaml").read_text())
            cfg["model"]["init_args"]["lr"] = 0.5
            (dst / "config.yaml").write_text(yaml.safe_dump(cfg))
    runs = load_runs([str(tmp_path / "runs" / "*" / "*")])
    table = compare(runs, ["val/mIoU"])
    assert len(table.rows) == 2
    assert any("lr=0.5" in r.label for r in table.rows)
    plot_curves(runs, "val/mIoU", tmp_path / "c.png")
    plot_bars(table, "val/mIoU", tmp_path / "b.png")
    assert (tmp_path / "c.png").is_file() and (tmp_path / "b.png").is_file()


def test_nothing_found_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_runs([str(tmp_path / "nope*")])


def _copy_runs(runs_root: Path, dst_root: Path, edit=None) -> Path:
    """Copies the four runs (no checkpoints); ``edit(name, seed_index, summary, run_dir)``."""
    for name in CONFIGS:
        for i, src in enumerate(sorted((runs_root / name).glob("*"))):
            dst = dst_root / name / src.name
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints"))
            summary = json.loads((dst / "summary.json").read_text())
            if edit is not None:
                edit(name, i, summary, dst)
            (dst / "summary.json").write_text(json.dumps(summary))
    return dst_root


def test_a_diverged_run_is_marked_not_dropped(runs_root, tmp_path):
    def diverge(name, i, summary, run_dir):
        if name == "lr_big" and i == 1:  # the second seed went NaN in its last epoch
            summary["final"]["val/mIoU"] = float("nan")
            rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
            last = max(int(r["epoch"]) for r in rows if r.get("val/mIoU"))
            for r in rows:
                if r.get("val/mIoU") and int(r["epoch"]) == last:
                    r["val/mIoU"] = "nan"
            with open(run_dir / "metrics.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)

    root = _copy_runs(runs_root, tmp_path / "runs", diverge)
    runs = load_runs(root)
    table = compare(runs, ["val/mIoU"], baseline="lr_small")
    big = table.row("lr_big")
    finals = [s["final"]["val/mIoU"] for s in summaries(root, "lr_big")]
    assert np.isnan(finals[1])
    final = big.final["val/mIoU"]
    assert final.n == 2 and final.diverged == 1 and final.mean == finals[0]
    assert big.best["val/mIoU"].diverged == 1  # the same run, though its best is finite
    assert table.row("lr_small").final["val/mIoU"].diverged == 0
    assert big.delta["val/mIoU"].test == "not tested: diverged run(s)"
    assert big.delta["val/mIoU"].p is None
    md = to_markdown(table)
    assert f"{finals[0]:.4f} ⚠ 1/2 diverged" in md
    rec = {r["config"]: r for r in table.records()}
    assert rec["lr_big"]["val/mIoU/final_diverged"] == 1
    assert rec["lr_small"]["val/mIoU/final_diverged"] == 0


def test_a_run_diverged_on_every_seed_says_so(runs_root, tmp_path):
    def diverge(name, i, summary, run_dir):
        if name == "lr_big":
            summary["final"]["val/mIoU"] = float("inf")
            summary["best"]["val/mIoU"] = float("nan")

    table = compare(load_runs(_copy_runs(runs_root, tmp_path / "runs", diverge)), ["val/mIoU"])
    best = table.row("lr_big").best["val/mIoU"]
    assert best.diverged == 2 and np.isnan(best.mean)
    assert "diverged (2/2)" in to_markdown(table)


def _with_cases(scores_of):
    def edit(name, i, summary, run_dir):
        summary["per_case"] = {"liver/dice": scores_of(name, i)}
        summary["best"]["val/liver/dice_per_case"] = 0.9
        summary["final"]["val/liver/dice_per_case"] = 0.9

    return edit


def test_paired_test_refuses_cases_missing_on_one_side(runs_root, tmp_path):
    cases = {f"case_{i}": 0.8 + 0.01 * i for i in range(7)}

    def scores(name, i):
        if name == "lr_big" and i == 0:
            return {c: v for c, v in cases.items() if c != "case_3"}
        return dict(cases)

    runs = load_runs(_copy_runs(runs_root, tmp_path / "runs", _with_cases(scores)))
    with pytest.raises(ValueError, match=r"refused: cases missing on one side: lr_big/.*case_3"):
        compare(runs, ["val/liver/dice_per_case"], baseline="lr_small")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "runs"), "--metrics", "val/liver/dice_per_case", "--baseline",
              "lr_small", "--no-plots", "--out", str(tmp_path / "out")])  # fmt: skip


def test_nan_per_case_scores_are_marked(runs_root, tmp_path):
    def scores(name, i):
        out = {f"case_{k}": 0.8 + 0.01 * k for k in range(7)}
        if name == "lr_big":
            out["case_5"] = float("nan")
        return out

    runs = load_runs(_copy_runs(runs_root, tmp_path / "runs", _with_cases(scores)))
    table = compare(runs, ["val/liver/dice_per_case"], baseline="lr_small")
    big = table.row("lr_big")
    assert big.best["val/liver/dice_per_case"].diverged == 2
    assert big.delta["val/liver/dice_per_case"].test == "not tested: diverged run(s)"


def test_a_metric_no_run_has_is_refused_with_the_closest(runs_root):
    runs = load_runs(runs_root)
    with pytest.raises(ValueError, match=r"No run holds the metric 'val/miou'.*'val/mIoU'"):
        compare(runs, ["val/miou"])


def test_class_names_of_the_wrong_length_are_refused():
    from seglab.tasks import SegmentationTask

    kw = {"model": "unet", "model_kwargs": {"base_channels": 4, "depth": 3}}
    with pytest.raises(ValueError, match=r"class_names has 2 name\(s\).*score 3 class"):
        SegmentationTask(num_classes=3, class_names=["a", "b"], **kw)
    with pytest.raises(ValueError, match=r"binary scores background and foreground"):
        SegmentationTask(num_classes=1, task="binary", class_names=["cell"], **kw)
    task = SegmentationTask(num_classes=3, class_names=["a", "b", "c"], **kw)
    assert task.class_names == ["a", "b", "c"]
