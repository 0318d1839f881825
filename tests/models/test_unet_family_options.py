"""The U-Net family builders: every option they accept changes the model or raises.

``OPTIONS`` holds, per builder, a value for each option of its signature (and what to build it
from); a builder that gains an option without a row here fails ``test_table_covers_every_option``.
A change is read from the model itself: tensor names and shapes, eval output on a fixed input,
the encoder's real stride (from its outputs), or the loaded tensor values.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from seglab.models import create_model
from seglab.models.registry import _BUILDERS, fidelity, list_models
from seglab.tasks import UNetFamilyTask
from tests.models.test_unet_family import FAMILY, TIMM, _one_thread  # noqa: F401 (fixture)

PLAIN = {"encoder_name": "unet", "base_channels": 4, "depth": 3}
UNSET = object()  # an override that removes a key of the base configuration
BASE = {name: dict(PLAIN) for name in FAMILY}
BASE["unet3plus"]["cat_channels"] = 4
DS = {"deep_supervision": True}
COMMON = {
    "in_channels": ({"in_channels": 1}, {}),
    "base_channels": ({"base_channels": 6}, {}),
    "depth": ({"depth": 4}, {}),
    "norm": ({"norm": None}, {}),
}
# option -> (overrides of the variant, overrides of the baseline it is compared with)
OPTIONS: dict[str, dict[str, tuple[dict, dict]]] = {
    "resunet": {
        "decoder_channels": ({"decoder_channels": [6, 5]}, {}),
        "upsample": ({"upsample": "transpose"}, {}),
        "act": ({"act": "silu"}, {}),
    },
    "mobileunet": {
        "decoder": ({"decoder": "inverted_residual"}, {}),
        "decoder_channels": ({"decoder_channels": [6, 5]}, {}),
        "expand_ratio": ({"expand_ratio": 2}, {}),
        "upsample": ({"upsample": "bilinear"}, {}),
    },
    "effunet": {
        "decoder": ({"decoder": "mbconv"}, {}),
        "decoder_channels": ({"decoder_channels": [6, 5]}, {}),
        "expand_ratio": ({"expand_ratio": 2}, {}),
        "se_ratio": ({"se_ratio": 0.5}, {}),
        "upsample": ({"upsample": "bilinear"}, {}),
    },
    "unetplusplus": {
        "decoder_channels": ({"decoder_channels": [6, 5]}, {}),
        "upsample": ({"upsample": "bilinear"}, {}),
        "deep_supervision": (DS, {}),
        "mode": ({"mode": "ensemble", **DS}, DS),
        "prune_level": ({"prune_level": 1, **DS}, DS),
        "ensemble_average": (
            {"ensemble_average": "logits", "mode": "ensemble", **DS},
            {"mode": "ensemble", **DS},
        ),
    },
    "unet3plus": {
        "cat_channels": ({"cat_channels": 6}, {}),
        "deep_supervision": (DS, {}),
        "cgm": ({"cgm": "paper"}, {}),
    },
}
for _name in FAMILY:
    _timm = {"encoder_name": TIMM[_name], "base_channels": UNSET, "depth": UNSET}
    OPTIONS[_name] |= COMMON | {"encoder_name": (_timm, {})}
    # Decoding on to stride 1 concerns timm encoders (the plain one already is at stride 1).
    OPTIONS[_name]["full_resolution"] = ({"full_resolution": False}, _timm)
# Checked by their own tests below: the stride from real outputs, the weights from tensors.
SPECIAL = {"num_classes", "weights", "output_stride"}


def accepted(name: str) -> set[str]:
    """The options of a builder's signature."""
    list_models()  # loads the registry
    return set(inspect.signature(_BUILDERS[name]).parameters)


CASES = [(n, opt) for n in FAMILY for opt in OPTIONS[n] if opt in accepted(n)]


def build(name: str, **overrides) -> torch.nn.Module:
    kw = {k: v for k, v in (BASE[name] | overrides).items() if v is not UNSET}
    torch.manual_seed(0)
    return create_model(name, 2, **kw)


def fingerprint(model: torch.nn.Module) -> tuple[list, torch.Tensor]:
    """Tensor names and shapes, and the eval output on a fixed input."""
    shapes = sorted((k, tuple(v.shape)) for k, v in model.state_dict().items())
    x = torch.randn(
        1, model.encoder.in_channels, 32, 32, generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        return shapes, model.eval()(x)


def test_table_covers_every_option():
    assert set(FAMILY) <= set(list_models())
    for name in FAMILY:  # full_resolution only where the builder has it
        assert accepted(name) - SPECIAL == set(OPTIONS[name]) & accepted(name), name


@pytest.mark.parametrize(("name", "option"), CASES)
def test_option_changes_the_model(name, option):
    variant, baseline = OPTIONS[name][option]
    shapes_a, out_a = fingerprint(build(name, **baseline))
    shapes_b, out_b = fingerprint(build(name, **(baseline | variant)))
    same_output = out_a.shape == out_b.shape and torch.allclose(out_a, out_b)
    assert shapes_a != shapes_b or not same_output, f"{name}: {option} changed nothing"


@pytest.mark.parametrize("name", FAMILY)
def test_output_stride_from_real_outputs(name):
    model = build(name, encoder_name=TIMM[name], base_channels=UNSET, depth=UNSET, output_stride=16)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        deepest = model.encoder(x)[-1]
    assert 64 // deepest.shape[-1] == 16 == model.encoder.output_stride
    with pytest.raises(
        ValueError, match=r"output_stride=8 .*stride 4.*at most 2 \*\* \(depth - 1\) = 4"
    ):
        build(name, output_stride=8)  # the plain encoder, depth 3: stride 4


@pytest.mark.parametrize("name", FAMILY)
def test_weights_file_is_loaded(name, tmp_path):
    torch.manual_seed(123)
    donor = build(name).encoder
    torch.manual_seed(123)
    state = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in donor.state_dict().items()
    }
    path = tmp_path / "encoder.pth"
    torch.save(state, path)
    loaded = build(name, weights=str(path)).encoder.state_dict()
    fresh = build(name).encoder.state_dict()
    key = next(k for k in state if k.endswith("weight"))
    assert torch.equal(loaded[key], state[key]) and not torch.equal(fresh[key], state[key])


@pytest.mark.parametrize(
    ("name", "overrides", "match"),
    [
        ("resunet", {"encoder_name": "resnet18", "depth": UNSET}, "base_channels=4"),
        ("unet3plus", {"encoder_name": "resnet18", "base_channels": UNSET}, "depth=3"),
        (
            "mobileunet",
            {
                "encoder_name": "mobilenetv2_050",
                "base_channels": UNSET,
                "depth": UNSET,
                "expand_ratio": 4,
            },
            "expand_ratio=4",
        ),
        (
            "effunet",
            {
                "encoder_name": "efficientnet_b0",
                "base_channels": UNSET,
                "depth": UNSET,
                "se_ratio": 0.5,
            },
            "se_ratio=0.5",
        ),
        ("unetplusplus", {"ensemble_average": "logits"}, "ensemble_average='logits'.*mode='last'"),
        ("mobileunet", {"decoder": "mbconv"}, "decoder='mbconv'.*'inverted_residual'"),
        ("effunet", {"decoder": "inverted_residual"}, "decoder='inverted_residual'.*'mbconv'"),
        ("unet3plus", {"cgm": "train"}, "cgm='train'.*'paper'"),
        ("unetplusplus", {"mode": "average"}, "mode must be one of"),
        (
            "unetplusplus",
            {"mode": "ensemble", **DS, "ensemble_average": "mean"},
            "ensemble_average must be",
        ),
    ],
)
def test_option_without_effect_raises(name, overrides, match):
    with pytest.raises(ValueError, match=match):
        build(name, **overrides)


# ------------------------------------------------------------------------------ fidelity
U_NET_FAMILY = ("unet", *FAMILY)


@pytest.mark.parametrize("name", U_NET_FAMILY)
def test_fidelity_counts_and_options(name):
    fid = fidelity(name)
    assert fid is not None and fid.reference and name in list_models()
    if fid.params is not None:
        with torch.device("meta"):
            model = create_model(name, **fid.settings)
        count = sum(p.numel() for p in model.parameters())
        assert abs(count / fid.params - 1) < 0.04, (name, count, fid.params)
    builder_options = accepted(name)
    task_options = set(inspect.signature(UNetFamilyTask.__init__).parameters)
    for dev in fid.deviations:
        assert dev.what and (dev.option == "-" or dev.why), dev
        for part in dev.option.split(","):
            if part.strip() == "-":
                continue
            words = part.split("=")[0].split()
            key, pool = words[-1], task_options if "UNetFamilyTask" in words else builder_options
            assert key in pool, (name, dev.option)


def test_reference_counts_named_in_the_issue():
    """U-Net 31.0M, U-Net++ 9.04M, U-Net 3+ 26.97M, ResUNet 7.8M (within 4 %)."""
    expected = {"unet": 31.0e6, "unetplusplus": 9.04e6, "unet3plus": 26.97e6, "resunet": 7.8e6}
    for name, ref in expected.items():
        fid = fidelity(name)
        assert fid.params == pytest.approx(ref, rel=1e-3)
        with torch.device("meta"):
            count = sum(p.numel() for p in create_model(name, **fid.settings).parameters())
        assert count == pytest.approx(ref, rel=0.04)
