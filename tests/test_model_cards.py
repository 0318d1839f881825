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
    # FCN-8s at 21 classes, counted by hand from the layer sizes: VGG-16's 13 3x3 convs,
    # fc6 (7x7x512 -> 4096) and fc7, score_fr, the pool4 / pool3 scores, two learned 4x4
    # up-samplers (the final 16x one is fixed bilinear)
    def conv(a: int, b: int, k: int = 3) -> int:
        return k * k * a * b + b

    chans = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    vgg = sum(conv(a, b) for a, b in zip(chans, chans[1:]))
    fc = conv(512, 4096, 7) + conv(4096, 4096, 1)
    scores = conv(4096, 21, 1) + conv(512, 21, 1) + conv(256, 21, 1)
    assert vgg + fc == 134_260_544
    expected = vgg + fc + scores + 2 * 21 * 21 * 4 * 4
    assert model_card("fcn8s", size=64, num_classes=21)["params"] == expected
    u3p = model_card("unet3plus", size=64, num_classes=1)
    # the official code builds 26.97M (in_channels=3, n_classes=1): measured, not the table's
    direct = sum(p.numel() for p in create_model("unet3plus", 1).parameters())
    assert u3p["params"] == direct == pytest.approx(26.97e6, rel=2e-4)
    # and the table's reference column agrees with the measured count
    assert u3p["params"] == pytest.approx(u3p["reference_params"], rel=2e-4)


def test_every_model_has_a_default_encoder():
    assert all(default_encoder(n) for n in list_models())


def test_command_prints_a_table(capsys):
    text = main(["--size", "64", "--models", "unet", "fcn8s", "--format", "csv"])
    assert capsys.readouterr().out == text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["name"] for r in rows] == ["unet", "fcn8s"]
    md = main(["--size", "64", "--models", "unetplusplus", "--num-classes", "2"])
    capsys.readouterr()
    head, row = (line for line in md.splitlines() if line.startswith("| "))
    cells = dict(zip(head.strip("| ").split(" | "), row.strip("| ").split(" | ")))
    assert cells["Model"] == "`unetplusplus`"
    model = create_model("unetplusplus", 2).eval()
    measured = sum(p.numel() for p in model.parameters())
    assert cells["Params"] == f"{measured / 1e6:.2f}M"  # the measured column, counted here
    flops = forward_flops(model, torch.zeros(1, 3, 64, 64))
    assert cells["GFLOPs"] == f"{flops / 1e9:.1f}"
    assert cells["Reference params"] == "9.04M"  # Zhou et al. 2018, beside it, not instead


def test_readme_models_table_is_the_current_output():
    from pathlib import Path

    from seglab.models.cards import model_cards, to_markdown

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = to_markdown(model_cards(512, 21), 512, 21)
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    stale = [row for row in rows if row not in readme]
    assert len(rows) == len(list_models()) and not stale, (
        "README's models table is out of date; paste the rows of `seglab models --size 512 "
        f"--num-classes 21`. Rows not in the README: {stale}"
    )
