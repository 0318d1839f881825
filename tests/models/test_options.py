"""The option rule: every option a builder accepts takes effect or raises a clear error.

Each builder's options are read from its signature, so a new option is covered automatically:
it fails here until ``ALT`` (or the type-based fallback) gives it an alternative value. For each
(builder, option, value) the model is built from a tiny base configuration with the option
changed, and it must either raise an error naming the option, or differ from the base model:
in its tensors (names, shapes, values), or in its eval or seeded train outputs. Two options get
a direct check: ``output_stride`` from the real feature maps, ``weights`` from tensor values.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import torch

from seglab.models import ModelOutput, create_model, list_models
from seglab.models.registry import _BUILDERS
from tests.models.test_batch_of_one import TINY  # the tiny base configuration of each

NUM_CLASSES = 3
SIZE = (72, 88)  # not multiples of 32: size-handling options show
#: Alternative values by option (or ``(builder, option)``); the type-based fallback otherwise.
ALT: dict[Any, list[Any]] = {
    "in_channels": [1],
    "output_stride": [8, 16, 32],
    "weights": ["file", "imagenet"],
    "norm": ["gn", None],
    "act": ["leaky_relu"],
    "upsample": ["bilinear", "transpose"],
    "pool_norm": [None, "gn"],
    "atrous_init": ["random"],
    "fc_init": ["random"],
    "multi_grid": [None, (1, 1, 1)],
    "aspp_rates": [(2, 3, 5, 7)],
    ("deeplabv3", "aspp_rates"): [(2, 3, 5)],
    ("deeplabv3plus", "aspp_rates"): [(2, 3, 5)],
    "rates": [(1, 2, 3, 4, 5)],
    "bins": [(1, 2, 4)],
    "skip_scales": [None],
    "learn_upsampling": ["none", "all"],
    "odd_size": ["resize"],
    "pool_skips": [True],  # the base's ResNet-18 resolves None to False
    "fc_kernel": [3],
    "dropout": [0.9],
    "decoder": ["mbconv", "inverted_residual", "unet"],
    "expand_ratio": [2],
    "se_ratio": [0.5],
    "mode": ["ensemble"],
    "prune_level": [1],
    "ensemble_average": ["sigmoid", "softmax"],
    "cgm": [False, "eval"],  # the base has cgm=True, the paper mode
    "decoder_channels": [[8, 8, 8, 8, 8], [8, 8, 8], [8, 8]],
    "base_channels": [8],
    "depth": [4],
    "encoder_depth": [3],
    "pool_window": [48, None],  # 6 positions at stride 8: cells unlike the 9x11 map's bins
}
#: Options whose effect depends on a decision the weights make: forced here in both models.
PROBES: dict[tuple[str, str], Any] = {
    ("unet3plus", "cgm"): lambda m: m.cgm is None or m.cgm.conv.bias.fill_(-1e4),  # "empty"
}
NO_VALUE = "<no alternative value: add one to ALT>"
ENCODER_ALT = {
    "unet": "resnet18",
    "resnet18": "resnet34",
    "mobilenetv2_050": "mobilenetv2_100",
    "efficientnet_b0": "efficientnet_lite0",
}


def alternatives(name: str, option: str, default: Any) -> list[Any]:
    """Values to try for an option; fails the collection's case when none can be chosen."""
    if (name, option) in ALT:
        return ALT[name, option]
    if option == "encoder_name":
        return [ENCODER_ALT[TINY[name].get("encoder_name", default)]]
    if option in ALT:
        return [v for v in ALT[option] if v != TINY[name].get(option, default)]
    base = TINY[name].get(option, default)
    if isinstance(base, bool):
        return [not base]
    if isinstance(base, int):
        return [base * 2]
    if isinstance(base, float):
        return [base / 2 if base else 0.5]
    return [NO_VALUE]


def cases() -> list[Any]:
    out = []
    for name in list_models():
        params = inspect.signature(_BUILDERS[name]).parameters
        for option, p in params.items():
            if option == "num_classes" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            for value in alternatives(name, option, p.default):
                out.append(pytest.param(name, option, value, id=f"{name}-{option}={value}"))
    return out


def test_every_builder_has_a_base_configuration() -> None:
    assert set(TINY) == set(list_models())


#: Base options that shape the plain encoder only, dropped when a timm encoder is asked for.
PLAIN_ONLY = ("base_channels", "depth")


def build(name: str, **kw: Any) -> torch.nn.Module:
    base = dict(TINY[name])
    if kw.get("encoder_name", "unet") != "unet":
        base = {k: v for k, v in base.items() if k not in PLAIN_ONLY}
    torch.manual_seed(0)
    return create_model(name, NUM_CLASSES, **{**base, **kw})


def perturb(model: torch.nn.Module, seed: int) -> None:
    """The same trained-looking tensors in every model of one structure: zero-initialised
    layers (FCN's skip scores) and ReLUs dead at init would hide an option's effect."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in sorted(model.state_dict().items()):
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif t.ndim >= 2:
                t.copy_(torch.randn(t.shape, generator=g) * (2 / t[0].numel()) ** 0.5)
            else:
                offset = 1.0 if name.endswith("weight") else 0.0
                t.copy_(torch.randn(t.shape, generator=g) * 0.1 + offset)


def outputs(model: torch.nn.Module, x: torch.Tensor, train: bool) -> list[torch.Tensor]:
    model.train(train)
    torch.manual_seed(1)
    with torch.no_grad():
        out = model(x)
    if isinstance(out, ModelOutput):
        extra = [*(out.side or []), out.aux, out.cls]
        return [out.logits, *(t for t in extra if t is not None)]
    return [out]


def differs(
    a: torch.nn.Module, b: torch.nn.Module, in_a: int, in_b: int, probe: Any = None
) -> str | None:
    """How ``b`` differs from ``a`` (tensors, eval or seeded train outputs), or None."""
    sa, sb = a.state_dict(), b.state_dict()
    if {k: v.shape for k, v in sa.items()} != {k: v.shape for k, v in sb.items()}:
        return "tensors"
    if any(not torch.equal(sa[k], sb[k]) for k in sa):
        return "values"
    for seed in (3, 4, 5):  # several draws: some effects depend on the data (a CGM's gate)
        for model in (a, b):
            perturb(model, seed)
            if probe is not None:
                with torch.no_grad():
                    probe(model)
        how = outputs_differ(a, b, in_a, in_b)
        if how:
            return how
    return None


def outputs_differ(a: torch.nn.Module, b: torch.nn.Module, in_a: int, in_b: int) -> str | None:
    """Which outputs (eval, seeded train) of ``b`` differ from ``a``'s on the same input."""
    for train in (False, True):
        torch.manual_seed(2)
        xa = torch.randn(2, in_a, *SIZE)
        xb = xa if in_a == in_b else torch.randn(2, in_b, *SIZE)
        oa, ob = outputs(a, xa, train), outputs(b, xb, train)
        assert all(torch.isfinite(o).all() for o in oa + ob), "non-finite outputs"
        if len(oa) != len(ob) or any(
            u.shape != v.shape or not torch.allclose(u, v, atol=1e-6) for u, v in zip(oa, ob)
        ):
            return "train outputs" if train else "eval outputs"
    return None


def random_encoder_file(name: str, tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(123)
    state = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in build(name).encoder.state_dict().items()
    }
    path = tmp_path / "encoder.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("name, option, value", cases())
def test_option_takes_effect_or_raises(name: str, option: str, value: Any, tmp_path) -> None:
    if value == NO_VALUE:
        pytest.fail(f"{name}: option {option!r} has no alternative value; add one to ALT")
    expected: dict[str, torch.Tensor] | None = None
    if option == "weights" and value == "file":
        value, expected = random_encoder_file(name, tmp_path)
        value = str(value)
    try:
        model = build(name, **{option: value})
    except (ValueError, TypeError, RuntimeError, KeyError) as err:
        assert option in str(err), f"{name}: {option}={value!r} raised without naming it: {err}"
        return
    if expected is not None:  # the file's tensors are in the encoder, value for value
        got = model.encoder.state_dict()
        mismatched = [k for k, v in expected.items() if not torch.equal(got[k], v)]
        assert not mismatched, f"{name}: weights file not loaded: {mismatched[:3]}"
        return
    if option == "output_stride":  # from the real feature maps, not the attributes
        model.eval()
        with torch.no_grad():
            deepest = model.encoder(torch.zeros(1, model.encoder.in_channels, 64, 64))[-1]
        assert deepest.shape[-1] == 64 // value, f"{name}: output_stride={value} ignored"
        assert model.encoder.output_stride == value
        return
    base = build(name)
    in_b = value if option == "in_channels" else 3
    how = differs(base, model, 3, in_b, PROBES.get((name, option)))
    assert how is not None, f"{name}: {option}={value!r} changed nothing (tensors, outputs)"
