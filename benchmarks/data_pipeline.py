"""The default experiment's data pipeline against what one training step consumes.

Images per second of the datamodule (workers and transforms as configured) over one epoch
that generates every sample and one that reads the worker's cache, against the images per
second the default model's Lightning step (timed by ``benchmarks.loop``) takes in.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from benchmarks.loop import default_config


def bench_data(
    args: argparse.Namespace, log: Callable[[str], None], step_s: float
) -> dict[str, Any]:
    """Loader throughput of two epochs and the rate a step of ``step_s`` seconds consumes."""
    from seglab.data.datamodule import SegDataModule

    data = dict(default_config()["data"])
    if args.data_samples:
        data["dataset_kwargs"] = {**data["dataset_kwargs"], "num_samples": args.data_samples}
    dm = SegDataModule(**data)
    dm.setup("fit")
    loader = dm.train_dataloader()
    rates = []
    for _ in range(2):  # the first epoch generates every sample, the second reads the cache
        start, images = time.perf_counter(), 0
        for batch in loader:
            images += batch["image"].shape[0]
        rates.append(images / (time.perf_counter() - start))
    out = {
        "workers": dm.num_workers,
        "batch": data["batch_size"],
        "generate_ips": rates[0],
        "cached_ips": rates[1],
        "consumed_ips": data["batch_size"] / step_s,
        "samples": len(dm.datasets["train"]),
        "dataset": data["dataset"],
    }
    log(
        f"data: {rates[0]:.0f} img/s generating, {rates[1]:.0f} img/s cached; "
        f"a training step consumes {out['consumed_ips']:.0f} img/s"
    )
    return out


def render_data(data: dict[str, Any]) -> list[str]:
    """The report section of ``bench_data``'s result."""
    return [
        "## Data pipeline\n",
        f"The default experiment's datamodule: `{data['dataset']}` reader, {data['samples']} "
        f"training images per epoch, batch {data['batch']}, {data['workers']} loader "
        "worker(s), the configured transforms and normalisation. A training step of the "
        "default model (Lightning, quiet) consumes the images in the last column.\n",
        "| Pipeline, generating (first epoch) | Pipeline, cached (second epoch) | "
        "Training consumes |",
        "|---:|---:|---:|",
        f"| {data['generate_ips']:.0f} img/s | {data['cached_ips']:.0f} img/s | "
        f"{data['consumed_ips']:.0f} img/s |",
        "\nThe loader was measured alone; during training its worker shares the CPU with the "
        "step.\n",
    ]
