"""The product comparison's interleaving: smp's plain-loop steps inside ``Trainer.fit`` are
timed apart from the Lightning steps, alternate before and after them, and leave every side's
random stream as it would be alone.
"""

from __future__ import annotations

import time

import lightning as L
import torch
from torch import nn

from benchmarks import quality
from benchmarks.quality_lightning import Interleaved
from benchmarks.quality_models import Side
from benchmarks.timing import bench_trainer


class Counting(L.LightningModule):
    """A linear model that counts its training steps."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.done = nn.Linear(4, 1), 0

    def training_step(self, batch, batch_idx):
        self.done += 1
        return self.lin(batch[0]).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(64, 4))
        return torch.utils.data.DataLoader(data, batch_size=4)


class SlowSide:
    """A stand-in smp side: each step sleeps and notes how many Lightning steps were done."""

    def __init__(self, task: Counting, seconds: float) -> None:
        self.task, self.seconds, self.seen = task, seconds, []

    def step(self, x, y, i) -> float:
        self.seen.append(self.task.done)
        time.sleep(self.seconds)
        return self.seconds


def test_interleaved_steps_alternate_and_are_timed_apart(tmp_path):
    task = Counting()
    side = SlowSide(task, 0.25)

    def slow_batches():  # smp's batches take 0.1 s to draw: counted in its steps, as Lightning's
        while True:
            time.sleep(0.1)
            yield torch.zeros(1), torch.zeros(1)

    steps = Interleaved(side, slow_batches(), "cpu")
    trainer = bench_trainer(tmp_path, [steps], "cpu", False, max_steps=6)
    trainer.fit(task)
    assert side.seen == [0, 2, 2, 4, 4, 6]  # before step 0, after step 1, before step 2, ...
    assert len(steps.smp) == 6 and min(steps.smp) >= 0.35  # its step and drawing its batch
    assert len(steps.lightning) == 5 and max(steps.lightning) < 0.25  # smp's time left out


def test_a_side_steps_on_its_own_random_stream(monkeypatch):
    """Two smp PSPNets (dropout) of one seed stay equal when the caller draws between one's
    steps, and the caller's stream is as it left it after each step."""
    args = quality.parse(["--steps", "2", "--crop", "32"])
    a, b = (Side("smp", "pspnet", args, 0) for _ in range(2))
    x, y = torch.rand(2, 1, 32, 32), torch.randint(0, 2, (2, 32, 32))
    for i in range(2):
        torch.manual_seed(100 + i)
        before = torch.get_rng_state()
        a.step(x, y, i)
        assert torch.equal(torch.get_rng_state(), before)
        torch.rand(1000)  # the caller draws; b must not notice
        b.step(x, y, i)
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_task_only_report_leaves_the_plain_table_out():
    import numpy as np

    from benchmarks.quality_report import render_quality
    from tests.test_benchmarks import quality_results

    res = quality_results(np.random.default_rng(0))
    res["plain"] = []
    text = "\n".join(render_quality(res))
    assert "Params M seglab / smp" not in text and "Through seglab's task" in text
    seeds = ", ".join(str(r["seed"]) for r in res["product"][:3])
    assert f"seeds {seeds};" in text and "`unet` = `smp.Unet`" in text
    assert f"| unet (task) | {res['product'][0]['seed']} |" in text
