"""``seglab models``: rows equal direct counts on real tensors."""

from __future__ import annotations

import csv
import io

import pytest
import torch

from seglab.models import create_model, list_models
from seglab.models.cards import default_encoder, forward_flops, main, model_card


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_unet_row_equals_a_direct_count_on_cpu():
    row = model_card("unet", size=64, num_classes=2)
    assert row["device"] == "meta" and row["encoder"] == "unet"
    model = create_model("unet", 2).eval()
    assert row["params"] == sum(p.numel() for p in model.parameters())
    assert row["flops"] == forward_flops(model, torch.zeros(1, 3, 64, 64))
    # The 3x3 convolutions alone: 2 * H * W * k^2 * C_in * C_out summed over the first level.
    level0 = 2 * 64 * 64 * 9 * (3 * 64 + 64 * 64)
    assert row["flops"] > level0


def test_pspnet_row_equals_a_direct_count_on_cpu():
    row = model_card("pspnet", size=64, num_classes=21)
    assert row["encoder"] == "resnet50"
    model = create_model("pspnet", 21).eval()
    assert row["params"] == sum(p.numel() for p in model.parameters())
    assert row["flops"] == forward_flops(model, torch.zeros(1, 3, 64, 64))


def test_published_counts():
    assert model_card("fcn8s", size=64, num_classes=21)["params"] == 134_489_759
    u3p = model_card("unet3plus", size=64, num_classes=1)
    assert u3p["params"] == pytest.approx(26.97e6, rel=1e-3)
    assert u3p["reference_params"] == 26.97e6


def test_every_model_has_a_default_encoder():
    assert all(default_encoder(n) for n in list_models())


def test_command_prints_a_table(capsys):
    text = main(["--size", "64", "--models", "unet", "fcn8s", "--format", "csv"])
    assert capsys.readouterr().out == text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["name"] for r in rows] == ["unet", "fcn8s"]
    md = main(["--size", "64", "--models", "unetplusplus", "--num-classes", "2"])
    assert "| `unetplusplus` |" in md and "9.04M" in md
