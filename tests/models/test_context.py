"""FCN, DeepLab v2/v3/v3+, PSPNet and DenseASPP: shapes, gradients, strides, sizes.

Heavy default configurations are built and run on the meta device (shapes, no compute); real
forward and backward passes use a ResNet-18 encoder with narrow heads.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seglab.models import ModelOutput, create_model
from seglab.models.aspp import atrous_rates

NAMES = [
    "fcn32s",
    "fcn16s",
    "fcn8s",
    "deeplabv2",
    "deeplabv3",
    "deeplabv3plus",
    "pspnet",
    "denseaspp",
]
DEFAULTS = {
    "fcn32s": ("vgg16", 32),
    "fcn16s": ("vgg16", 32),
    "fcn8s": ("vgg16", 32),
    "deeplabv2": ("resnet101", 8),
    "deeplabv3": ("resnet101", 8),
    "deeplabv3plus": ("xception65", 16),
    "pspnet": ("resnet50", 8),
    "denseaspp": ("densenet161", 8),
}
TINY = {
    "fcn32s": dict(fc_channels=32),
    "fcn16s": dict(fc_channels=32),
    "fcn8s": dict(fc_channels=32, pool_skips=True),
    "deeplabv2": dict(),
    "deeplabv3": dict(channels=32, aux_head=True),
    "deeplabv3plus": dict(channels=32, low_level_channels=16),
    "pspnet": dict(channels=32),
    "denseaspp": dict(reduce_channels=32, growth=16),
}
CONTEXT = ["deeplabv2", "deeplabv3", "deeplabv3plus", "pspnet", "denseaspp"]
POOLED = ["deeplabv3", "deeplabv3plus", "pspnet"]
X_SHAPE = (67, 93)


def tiny(name: str, num_classes: int = 3, **kw) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes, encoder_name="resnet18", **{**TINY[name], **kw})


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_default_config_on_meta(name: str) -> None:
    encoder, stride = DEFAULTS[name]
    with torch.device("meta"):
        model = create_model(name, 21)
        model.eval()
        out = model(torch.empty(2, 3, *X_SHAPE))
    assert model.encoder.reductions[-1] == stride
    assert out.shape == (2, 21, *X_SHAPE)
    assert n_params(model) > 30_000_000, encoder


@pytest.mark.parametrize("name", NAMES)
def test_tiny_encoder_eval_train_backward_batch1(name: str) -> None:
    model = tiny(name)
    x = torch.randn(2, 3, *X_SHAPE)
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, *X_SHAPE)

    model.train()
    out = model(x)
    has_aux = name == "pspnet" or TINY[name].get("aux_head", False)
    if has_aux:
        assert isinstance(out, ModelOutput) and out.aux.shape == (2, 3, *X_SHAPE)
        loss = out.logits.sum() + out.aux.sum()
    else:
        assert isinstance(out, torch.Tensor)
        loss = out.sum()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing[:5]

    if name in POOLED:  # BatchNorm after global pooling: a batch of 1 gets a clear error
        with pytest.raises(ValueError, match=r"batch of 1 .*batch_size >= 2.*pool_norm"):
            model(torch.randn(1, 3, 32, 45))
        model = tiny(name, pool_norm=None).train()  # the normalisation-free branch
    if name in CONTEXT:
        out = model(torch.randn(1, 3, 32, 45))
        logits = out.logits if isinstance(out, ModelOutput) else out
        assert logits.shape == (1, 3, 32, 45)


@pytest.mark.parametrize("name", ["deeplabv3", "deeplabv3plus"])
def test_batch_of_one_on_a_one_pixel_map_gets_a_clear_error(name: str) -> None:
    """16x16 at stride 16 is allowed by the minimum-size check; BatchNorm then sees 1 value."""
    model = tiny(name, pool_norm=None, output_stride=16).train()
    with pytest.raises(ValueError, match=r"batch of 1 .*1x1 map.*crops of at least 32"):
        model(torch.randn(1, 3, 16, 16))
    model(torch.randn(2, 3, 16, 16))  # a batch of 2 trains
    model.eval()(torch.randn(1, 3, 16, 16))  # and evaluation takes a batch of 1


EXPECTED_RATES = {
    ("deeplabv2", 8): [6, 12, 18, 24],
    ("deeplabv2", 16): [3, 6, 9, 12],
    ("deeplabv3", 8): [12, 24, 36],
    ("deeplabv3", 16): [6, 12, 18],
    ("deeplabv3plus", 8): [12, 24, 36],
    ("deeplabv3plus", 16): [6, 12, 18],
    ("denseaspp", 8): [3, 6, 12, 18, 24],
    ("denseaspp", 16): [2, 3, 6, 9, 12],
    ("pspnet", 8): [],
    ("pspnet", 16): [],
}


@pytest.mark.parametrize("name", CONTEXT)
@pytest.mark.parametrize("stride", [8, 16])
def test_output_stride_sets_reductions_and_rates(name: str, stride: int) -> None:
    with torch.device("meta"):
        model = tiny(name, output_stride=stride)
        model.eval()
        out = model(torch.empty(1, 3, *X_SHAPE))
    assert model.encoder.reductions[-1] == stride
    assert out.shape == (1, 3, *X_SHAPE)
    context = model.head.ppm if name == "pspnet" else model.head.aspp
    assert atrous_rates(context) == EXPECTED_RATES[name, stride]


@pytest.mark.parametrize("stride, grid", [(16, [2, 4, 8]), (8, [4, 8, 16]), (32, [1, 2, 4])])
def test_multi_grid_on_resnet101(stride: int, grid: list[int]) -> None:
    with torch.device("meta"):
        model = create_model("deeplabv3", 21, output_stride=stride)
    layer4 = model.encoder.model.layer4
    assert [block.conv2.dilation[0] for block in layer4] == grid
    assert [block.conv2.padding[0] for block in layer4] == grid


def test_multi_grid_off_keeps_timm_dilation() -> None:
    with torch.device("meta"):
        model = create_model("deeplabv3", 21, output_stride=16, multi_grid=None)
    assert [block.conv2.dilation[0] for block in model.encoder.model.layer4] == [1, 2, 2]


def test_image_pooling_and_rates_ablation() -> None:
    with torch.device("meta"):
        full = create_model("deeplabv3", 5, encoder_name="resnet18", channels=16)
        ablated = create_model(
            "deeplabv3",
            5,
            encoder_name="resnet18",
            channels=16,
            image_pooling=False,
            aspp_rates=(4, 8),  # given at stride 16
            output_stride=16,
        )
    assert len(full.head.aspp.branches) == 5 and len(ablated.head.aspp.branches) == 3
    assert atrous_rates(ablated.head.aspp) == [4, 8]
    pooling = full.head.aspp.branches[-1]
    assert any(isinstance(m, nn.BatchNorm2d) for m in pooling.modules())  # the paper's
    with torch.device("meta"):
        free = create_model("deeplabv3", 5, encoder_name="resnet18", channels=16, pool_norm=None)
    pooling = free.head.aspp.branches[-1]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in pooling.modules())
    assert pooling.conv[0].bias is not None


def test_pspnet_bin_one_takes_batchnorm() -> None:
    with torch.device("meta"):
        paper = create_model("pspnet", 5, encoder_name="resnet18", channels=16)
        free = create_model("pspnet", 5, encoder_name="resnet18", channels=16, pool_norm=None)
    bin1 = [b[1] for b in paper.head.ppm.branches]
    assert all(isinstance(b[1], nn.BatchNorm2d) for b in bin1)
    assert isinstance(free.head.ppm.branches[0][1][1], nn.Identity)
    assert all(isinstance(b[1][1], nn.BatchNorm2d) for b in free.head.ppm.branches[1:])


def test_pspnet_encoder_depth_is_smps_truncated_resnet() -> None:
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    model = create_model("pspnet", 1, "resnet18", in_channels=1, encoder_depth=3, aux_head=False)
    ref = smp.PSPNet("resnet18", encoder_weights=None, in_channels=1, classes=1)  # depth 3
    assert model.encoder.channels == [64, 64, 128] and model.encoder.reductions == [2, 4, 8]
    names = {k.split(".")[0] for k in model.encoder.model.state_dict()}
    assert not names & {"layer3", "layer4"}, names  # the dropped stages are not built
    own = model.encoder.model.state_dict()
    assert nn.Module.load_state_dict(ref.encoder, own, strict=False).unexpected_keys == []
    x = torch.randn(2, 1, 64, 96)
    model.eval(), ref.eval()
    with torch.no_grad():
        assert torch.allclose(model.encoder(x)[-1], ref.encoder(x)[3], atol=1e-5)
        assert model(x).shape == (2, 1, 64, 96)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(encoder_depth=6), r"encoder_depth=6: encoder 'resnet18' has 5 feature levels"),
        (dict(encoder_depth=3, output_stride=16), r"with encoder_depth=3 set output_stride=8"),
    ],
)
def test_pspnet_encoder_depth_errors(kw: dict, match: str) -> None:
    with torch.device("meta"), pytest.raises(ValueError, match=match):
        create_model("pspnet", 2, "resnet18", **kw)


@pytest.mark.parametrize("name", ["pspnet", "deeplabv3"])
def test_group_norm_on_a_pooled_map_keeps_the_image_context(name: str) -> None:
    # narrow pooled branches (32 and 16 channels): 1 channel per group would give 0 always
    kw = dict(encoder_depth=3) if name == "pspnet" else dict(channels=16)
    model = create_model(name, 2, "resnet18", pool_norm="gn", **kw)
    branch = model.head.ppm.branches[0] if name == "pspnet" else model.head.aspp.branches[-1]
    norm = next(m for m in branch.modules() if isinstance(m, nn.GroupNorm))
    assert norm.num_channels // norm.num_groups >= 2
    model.eval()
    torch.manual_seed(0)
    feats = [torch.randn(1, model.encoder.channels[-1], 4, 4) * s for s in (1.0, 3.0)]
    with torch.no_grad():  # batch 1: trains and predicts without batch statistics
        outs = [branch(f) for f in feats]
    assert not torch.allclose(outs[0], outs[1]), "the pooled branch ignores its input"


def test_multi_grid_on_a_non_resnet_raises() -> None:
    with torch.device("meta"):
        with pytest.raises(ValueError, match=r"multi_grid=\[1, 2, 4\] needs a ResNet"):
            create_model("deeplabv3", 4, encoder_name="vgg16", multi_grid=(1, 2, 4))
        auto = create_model("deeplabv3", 4, encoder_name="vgg16", channels=8)  # "auto": none
    assert auto.encoder.reductions[-1] == 8  # the default output stride


@pytest.mark.parametrize("stride", [8, 16])
def test_dilated_densenet161(stride: int) -> None:
    with torch.device("meta"):
        model = create_model("denseaspp", 19, output_stride=stride)
    enc = model.encoder
    assert enc.reductions == [2, 4, 8, min(16, stride), stride]
    block4 = enc.model.features_denseblock4
    dilations = {m.dilation[0] for m in block4.modules() if isinstance(m, nn.Conv2d)}
    assert dilations == {1, 32 // stride}  # 1x1 bottlenecks stay 1
    assert isinstance(enc.model.features_transition3.pool, nn.Identity)


def test_dilated_vgg_runs() -> None:
    with torch.device("meta"):
        model = create_model("deeplabv3", 4, encoder_name="vgg16", output_stride=8, channels=8)
        out = model.eval()(torch.empty(1, 3, *X_SHAPE))
    assert model.encoder.reductions == [1, 2, 4, 8, 8, 8]
    assert out.shape == (1, 4, *X_SHAPE)


def test_training_loader_drops_the_incomplete_batch() -> None:
    """BatchNorm in the pooled branches needs batches of 2: the last one of 5 / 2 is dropped."""
    from seglab.data.datamodule import SegDataModule

    dm = SegDataModule(dataset_kwargs={"size": 32, "num_samples": 5}, batch_size=2, num_workers=0)
    dm.setup("fit")
    assert [len(b["image"]) for b in dm.train_dataloader()] == [2, 2]
    small = SegDataModule(
        dataset_kwargs={"size": 32, "num_samples": 1}, batch_size=2, num_workers=0
    )
    small.setup("fit")
    with pytest.raises(ValueError, match="batch_size=2 is larger than the training split"):
        small.train_dataloader()
