"""Paper fidelity: every architecture registers its reference; counts match it where published.

The references' counts are recomputed here independently (torchvision's models, the official
DenseASPP layer list), not copied from the registry.
"""

from __future__ import annotations

import collections
import functools
from pathlib import Path

import pytest
import torch
import torchvision

from seglab.models import create_model, list_models
from seglab.models.cards import main
from seglab.models.fidelity_table import fidelity_row
from seglab.models.registry import fidelity


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
def test_every_architecture_has_a_fidelity(name: str) -> None:
    fid = fidelity(name)
    assert fid is not None, f"{name}: register a Fidelity beside its builder"
    assert fid.reference and all(d.what and d.option for d in fid.deviations)


@pytest.mark.parametrize("name", [n for n in list_models() if fidelity(n) and fidelity(n).params])
def test_counts_at_the_reference_settings_within_4_percent(name: str) -> None:
    row = fidelity_row(name)
    assert abs(row["params"] - row["reference_params"]) <= 0.04 * row["reference_params"], row
    for part in row["parts"].values():
        assert abs(part["params"] - part["reference_params"]) <= 0.02 * part["reference_params"]


def official_denseaspp161(num_classes: int = 19) -> tuple[int, int]:
    """(trunk, head) of the official DenseASPP161 (models/DenseASPP.py, its Model_CFG).

    Trunk: DenseNet-161's features (torchvision's, ending in a BN on 2208 channels: the
    official transition4's BN), transition4's 1x1 conv 2208 -> 1104 without bias, norm5 on
    1104. Head: five _DenseAsppBlocks (1x1 conv 512 with bias, BN, 3x3 conv 128 with bias; a
    leading BN on all but the first) and the 1x1 classifier on 1104 + 5 * 128.
    """
    dense = n_params(torchvision.models.densenet161(weights=None).features)
    trunk = dense + 2208 * 1104 + 2 * 1104
    head, width = 0, 1104
    for i in range(5):
        head += (2 * width if i else 0) + width * 512 + 512 + 2 * 512 + 512 * 128 * 9 + 128
        width += 128
    return trunk, head + width * num_classes + num_classes


def test_denseaspp_trunk_and_head_match_the_official_code() -> None:
    trunk, head = official_denseaspp161()
    row = fidelity_row("denseaspp")
    assert row["parts"]["trunk"]["params"] == trunk == 28_911_840
    assert row["parts"]["head"]["params"] == head == 6_483_587
    with torch.device("meta"):
        model = create_model("denseaspp", 19)
    layer = model.head.aspp.layers[1]  # pre-activation: BN-ReLU-conv
    assert [type(m).__name__ for m in layer][:3] == ["BatchNorm2d", "ReLU", "Conv2d"]
    assert type(model.head.aspp.layers[0][0]).__name__ == "Conv2d"  # follows norm5


def test_deeplabv3_against_torchvision_to_the_tensor() -> None:
    tv = torchvision.models.segmentation.deeplabv3_resnet101(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=False
    )
    with torch.device("meta"):
        ours = create_model("deeplabv3", 21, output_stride=8, multi_grid=None)
    theirs = collections.Counter(tuple(p.shape) for p in tv.parameters())
    mine = collections.Counter(tuple(p.shape) for p in ours.parameters())
    assert not mine - theirs  # every seglab tensor has a torchvision twin
    extra = dict(tv.classifier.named_parameters())
    named = {k: tuple(v.shape) for k, v in extra.items() if k.startswith(("1.", "2."))}
    assert named == {"1.weight": (256, 256, 3, 3), "2.weight": (256,), "2.bias": (256,)}
    assert theirs - mine == collections.Counter(named.values())
    assert n_params(tv) - n_params(ours) == 590_336
    assert fidelity("deeplabv3").params == n_params(tv)


@functools.cache
def full_table() -> str:
    return main(["--fidelity"])


def test_fidelity_command_prints_every_architecture(capsys) -> None:
    text = main(["--fidelity", "--models", "fcn8s", "pspnet"])
    assert capsys.readouterr().out == text
    assert "| `fcn8s` | Long et al." in text and "134,362,751 | 134,362,751 | equal |" in text
    assert "`pool_norm=bn\\|gn\\|None`" in text  # pipes escaped inside the table
    for name in list_models():
        assert f"| `{name}` |" in full_table()


def test_readme_holds_the_generated_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert full_table() in readme, "regenerate the README table: seglab models --fidelity"
