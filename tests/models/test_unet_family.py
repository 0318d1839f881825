"""The U-Net family: ResUNet, Mobile U-Net, EfficientNet U-Net, UNet++ and UNet 3+."""

from __future__ import annotations

import pytest
import torch

from seglab.models import ModelOutput, create_model, list_models
from seglab.models.blocks import ConvNormAct
from seglab.models.heads import SUPPRESSED_LOGIT, cgm_gate
from seglab.models.mobileunet import InvertedResidual
from seglab.models.resunet import ResidualUnit
from seglab.models.unetplusplus import average_heads, count_flops

FAMILY = ("resunet", "mobileunet", "effunet", "unetplusplus", "unet3plus")
TIMM = {
    "resunet": "resnet18",
    "mobileunet": "mobilenetv2_050",
    "effunet": "efficientnet_b0",
    "unetplusplus": "resnet18",
    "unet3plus": "resnet18",
}
# Flags that add heads, so that train mode exercises side and classification outputs.
FLAGS = {
    "unetplusplus": {"deep_supervision": True},
    "unet3plus": {"deep_supervision": True, "cgm": True},
}
CASES = [(name, "unet") for name in FAMILY] + [(name, TIMM[name]) for name in FAMILY]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convolutions run faster on one thread than on two contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_model(name: str, encoder: str, num_classes: int = 3, **kw) -> torch.nn.Module:
    """A narrow member of the family (plain encoders at 8 base channels)."""
    kw = FLAGS.get(name, {}) | kw
    if encoder == "unet":
        kw.setdefault("base_channels", 8)
    if name == "unet3plus":
        kw.setdefault("cat_channels", 8)
    torch.manual_seed(0)
    return create_model(name, num_classes, encoder_name=encoder, **kw)


def all_outputs_sum(out: torch.Tensor | ModelOutput) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out.sum()
    total = out.logits.sum() + sum(s.sum() for s in out.side)
    return total + (out.cls.sum() if out.cls is not None else 0)


def heads_on_full_graph(model: torch.nn.Module, x: torch.Tensor) -> ModelOutput:
    """All heads of an eval-mode model (BN frozen): only the top module claims training."""
    model.eval()
    model.training = True
    try:
        with torch.no_grad():
            return model(x)
    finally:
        model.eval()


def test_registered():
    assert set(FAMILY) <= set(list_models())


@pytest.mark.parametrize(("name", "encoder"), CASES)
def test_eval_logits_at_input_size(name, encoder):
    model = small_model(name, encoder).eval()
    assert model.encoder.channels and len(model.encoder.reductions) == len(model.encoder.channels)
    for size in [(67, 93), (32, 45)]:
        with torch.no_grad():
            out = model(torch.randn(2, 3, *size))
        assert isinstance(out, torch.Tensor) and out.shape == (2, 3, *size)


@pytest.mark.parametrize(("name", "encoder"), CASES)
def test_train_gradients_reach_every_parameter(name, encoder):
    model = small_model(name, encoder).train()
    out = model(torch.randn(2, 3, 64, 64))
    if name in FLAGS:
        assert isinstance(out, ModelOutput) and out.side
        assert all(s.shape == (2, 3, 64, 64) for s in out.side)
    all_outputs_sum(out).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


# ------------------------------------------------------------------------------ UNet++
def test_unetplusplus_outputs_per_mode():
    x = torch.randn(2, 3, 67, 93)
    plain = small_model("unetplusplus", "unet", deep_supervision=False).train()
    assert isinstance(plain(x), torch.Tensor)
    ds = small_model("unetplusplus", "unet").train()
    out = ds(x)
    assert out.logits.shape == (2, 3, 67, 93) and len(out.side) == 3 and out.cls is None
    with pytest.raises(ValueError, match="deep_supervision"):
        small_model("unetplusplus", "unet", deep_supervision=False, mode="ensemble")


@pytest.mark.parametrize(
    ("num_classes", "average"), [(3, None), (1, None), (3, "sigmoid"), (3, "logits")]
)
def test_unetplusplus_ensemble_averages_top_row_heads(num_classes, average):
    x = torch.randn(2, 3, 67, 93)
    kw = {} if average is None else {"ensemble_average": average}
    model = small_model("unetplusplus", "unet", num_classes, mode="ensemble", **kw)
    heads = heads_on_full_graph(model, x)
    with torch.no_grad():
        out = model(x)
    cols = [*heads.side, heads.logits]
    if average == "logits":
        torch.testing.assert_close(out, sum(cols) / len(cols))
    elif num_classes == 1 or average == "sigmoid":  # mean of 1 / (1 + e^-z), back to a logit
        prob = sum(1 / (1 + torch.exp(-c)) for c in cols) / len(cols)
        torch.testing.assert_close(1 / (1 + torch.exp(-out)), prob, rtol=1e-5, atol=1e-6)
    else:  # mean of e^z / sum e^z; the output is its log
        prob = sum(c.exp() / c.exp().sum(1, keepdim=True) for c in cols) / len(cols)
        torch.testing.assert_close(out.exp(), prob, rtol=1e-5, atol=1e-6)


def test_ensemble_of_probabilities_decides_unlike_the_logit_mean():
    """Heads at logits 6, -2.5, -2.5: logit mean 1/3 says foreground; the probability mean
    (0.99753 + 2 * 0.07586) / 3 = 0.38308 says background, as the paper's sigmoid average does."""
    heads = [torch.full((1, 1, 2, 2), v) for v in (6.0, -2.5, -2.5)]
    assert (average_heads(heads, "logits") > 0).all()
    out = average_heads(heads, "sigmoid")
    torch.testing.assert_close(
        torch.sigmoid(out), torch.full_like(out, 0.383081), atol=1e-5, rtol=0
    )


def test_unetplusplus_pruning_runs_only_the_subnetwork():
    x = torch.randn(2, 3, 67, 93)
    model = small_model("unetplusplus", "unet")
    heads = heads_on_full_graph(model, x)
    columns = [*heads.side, heads.logits]  # heads of X(0,1) .. X(0,4)
    calls = []
    model.encoder.blocks[-1].register_forward_hook(lambda *a: calls.append(1))
    flops = {}
    for level in range(1, 5):
        model.prune_level = level
        with torch.no_grad():
            out = model(x)
        assert out.shape == (2, 3, 67, 93)
        torch.testing.assert_close(out, columns[level - 1])
        assert len(calls) == (level == 4)
        calls.clear()
        flops[level] = count_flops(model, x)
    assert flops[1] < flops[2] < flops[3] < flops[4]
    assert flops[1] < flops[4] / 4
    model.train()
    assert isinstance(model(x), ModelOutput)  # training ignores pruning


def test_unetplusplus_pruning_timm_encoder_and_validation():
    model = small_model("unetplusplus", "resnet18").eval()
    for level in range(1, 5):
        model.prune_level = level
        with torch.no_grad():
            assert model(torch.randn(1, 3, 67, 93)).shape == (1, 3, 67, 93)
    for bad in (0, 5):
        with pytest.raises(ValueError, match="prune_level"):
            model.prune_level = bad
    no_ds = small_model("unetplusplus", "unet", deep_supervision=False)
    no_ds.prune_level = 4
    with pytest.raises(ValueError, match="deep_supervision"):
        no_ds.prune_level = 2


def test_unetplusplus_paper_parameter_count():
    with torch.device("meta"):
        model = create_model("unetplusplus", 1, base_channels=32)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(9.04e6, rel=0.01)


# ------------------------------------------------------------------------------ UNet 3+
def forced_cgm(model: torch.nn.Module, logit: float) -> torch.nn.Module:
    """Makes the CGM answer ``logit`` for every image (negative: "empty")."""
    with torch.no_grad():
        model.cgm.conv.weight.zero_()
        model.cgm.conv.bias.fill_(logit)
    return model


@pytest.mark.parametrize("num_classes", [1, 3])
def test_unet3plus_paper_cgm_gates_training_side_outputs(num_classes):
    x = torch.randn(2, 3, 64, 64)
    paper = forced_cgm(small_model("unet3plus", "unet", num_classes, cgm="paper"), -5.0).train()
    seglab = forced_cgm(small_model("unet3plus", "unet", num_classes, cgm="eval"), -5.0).train()
    gated, ungated = paper(x), seglab(x)
    assert len(gated.side) == len(ungated.side) == 4
    for g, u in zip([gated.logits, *gated.side], [ungated.logits, *ungated.side]):
        if num_classes == 1:
            assert (g == SUPPRESSED_LOGIT).all() and (u != SUPPRESSED_LOGIT).all()
        else:
            assert (g[:, 1:] == SUPPRESSED_LOGIT).all() and torch.equal(g[:, 0], u[:, 0])
            assert (u[:, 1:] != SUPPRESSED_LOGIT).all()
    # "Has foreground": the paper's gate passes every output through unchanged.
    kept = forced_cgm(paper, 5.0)(x)
    for k, u in zip([kept.logits, *kept.side], [ungated.logits, *ungated.side]):
        torch.testing.assert_close(k, u)
    assert paper.training and small_model("unet3plus", "unet", cgm=True).cgm_mode == "paper"


def test_unet3plus_train_output_fields():
    model = small_model("unet3plus", "unet", num_classes=1).train()
    out = model(torch.randn(2, 3, 67, 93))
    assert out.logits.shape == (2, 1, 67, 93)
    assert [s.shape for s in out.side] == [(2, 1, 67, 93)] * 4  # d2, d3, d4, bottleneck
    assert out.cls.shape == (2, 1) and out.aux is None
    only_cgm = small_model("unet3plus", "unet", deep_supervision=False).train()
    out = only_cgm(torch.randn(2, 3, 64, 64))
    assert out.side == [] and out.cls.shape == (2, 1)


@pytest.mark.parametrize("num_classes", [1, 3])
def test_unet3plus_cgm_gate_suppresses_foreground(num_classes):
    model = small_model("unet3plus", "unet", num_classes=num_classes).eval()
    x = torch.randn(2, 3, 67, 93)
    with torch.no_grad():
        model.cgm.conv.weight.zero_()
        model.cgm.conv.bias.fill_(-5.0)  # "no foreground"
        gated = model(x)
        model.cgm.conv.bias.fill_(5.0)  # "foreground": the gate is a no-op
        kept = model(x)
        ungated = model.head(model.decoder(model.encoder(x))[0], x)
    torch.testing.assert_close(kept, ungated)
    if num_classes == 1:
        assert (gated == SUPPRESSED_LOGIT).all()
    else:
        assert (gated.argmax(1) == 0).all()
        torch.testing.assert_close(gated[:, 0], ungated[:, 0])


def test_cgm_gate_is_per_image():
    logits = torch.randn(2, 3, 8, 8)
    out = cgm_gate(logits, torch.tensor([[2.0], [-2.0]]))
    torch.testing.assert_close(out[0], logits[0])
    assert (out[1, 1:] == SUPPRESSED_LOGIT).all() and torch.equal(out[1, 0], logits[1, 0])


def test_paper_parameter_counts():
    with torch.device("meta"):
        u3p = create_model("unet3plus", 1, in_channels=3, base_channels=64)
        unet = create_model("unet", 2, in_channels=1)
    assert sum(p.numel() for p in u3p.parameters()) == pytest.approx(26.97e6, rel=0.01)
    assert sum(p.numel() for p in unet.parameters()) == pytest.approx(31.0e6, rel=0.01)


# ------------------------------------------------------------------ building blocks
def test_residual_unit_shortcuts_and_stem():
    assert isinstance(ResidualUnit(8, 8).shortcut, torch.nn.Identity)
    assert not isinstance(ResidualUnit(8, 16).shortcut, torch.nn.Identity)
    model = small_model("resunet", "unet")
    first, second = model.encoder.blocks[0], model.encoder.blocks[1]
    assert isinstance(first.body[0], torch.nn.Conv2d | torch.nn.Sequential)
    assert isinstance(second.body[0], torch.nn.BatchNorm2d)


def test_default_encoders():
    with torch.device("meta"):
        assert create_model("resunet", 2).encoder.channels == [64, 128, 256, 512]
        assert create_model("mobileunet", 2).encoder.channels[-1] == 320
        effunet = create_model("effunet", 2)
        assert effunet.encoder.channels == [32, 48, 80, 224, 640]  # EfficientNet-B7
        assert isinstance(effunet.decoder.ups[0], torch.nn.ConvTranspose2d)  # U-Net decoder
        assert isinstance(create_model("mobileunet", 2).decoder.blocks[0][0], ConvNormAct)
        old = create_model("effunet", 2, defaults_version=1)
        assert old.encoder.channels == [16, 24, 40, 112, 320]
        assert isinstance(old.decoder.blocks[0][0], InvertedResidual)
        assert create_model("unetplusplus", 2).encoder.channels[0] == 32
        assert create_model("unet3plus", 2).encoder.channels[0] == 64
