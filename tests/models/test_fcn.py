"""FCN-32s/16s/8s: the Caffe parameter counts, skip scaling, fixed final up-sampler, odd sizes."""

from __future__ import annotations

import pytest
import torch

from seglab.models import create_model
from tests.models.test_context import n_params, tiny

# Caffe voc-fcn8s-atonce, layer by layer: (kernel, in, out) of every conv with a bias.
VGG16 = [(3, 3, 64), (3, 64, 64), (3, 64, 128), (3, 128, 128), (3, 128, 256)]
VGG16 += [(3, 256, 256)] * 2 + [(3, 256, 512)] + [(3, 512, 512)] * 5
VGG16 += [(7, 512, 4096), (1, 4096, 4096)]  # fc6, fc7


def caffe_fcn_learned(num_classes: int, skips: list[int]) -> int:
    """Learned blobs (lr_mult > 0): VGG-16, score_fr and the skip scores; deconvs are fixed."""
    convs = VGG16 + [(1, 4096, num_classes)] + [(1, c, num_classes) for c in skips]
    return sum(k * k * cin * cout + cout for k, cin, cout in convs)


def test_fcn8s_parameter_count_equals_caffe_at_21_classes() -> None:
    with torch.device("meta"):
        atonce = create_model("fcn8s", 21, learn_upsampling="none")
        paper = create_model("fcn8s", 21)
        first = create_model("fcn8s", 21, defaults_version=1)
        first2 = create_model("fcn8s", 2, defaults_version=1)
    assert n_params(atonce) == caffe_fcn_learned(21, [512, 256]) == 134_362_751
    assert n_params(paper) == n_params(atonce) + 2 * 21 * 21 * 4 * 4  # the learned 2x ups
    assert n_params(first) == n_params(paper) + 21 * 21 * 16 * 16  # + the learned final 8x
    # The first round's "134,270,278 reference" is the 2-class count without the up-samplers.
    ups = sum(p.numel() for n, p in first2.named_parameters() if ".up_" in n)
    assert n_params(first2) - ups == caffe_fcn_learned(2, [512, 256]) == 134_270_278


def test_fcn_skips_read_vgg_pools() -> None:
    with torch.device("meta"):
        model = create_model("fcn8s", 21)
    head = model.head
    assert head.pool_skips and [model.encoder.channels[i] for i in head.skip_levels] == [512, 256]
    assert [s.in_channels for s in head.score_skips] == [512, 256]
    assert head.up_final.kernel_size == (16, 16) and head.up_final.stride == (8, 8)
    assert head.skip_scales == [0.01, 0.0001]


def test_fcn_upsamplers_bilinear_final_fixed() -> None:
    model = tiny("fcn8s")
    assert not list(model.head.up_final.parameters())  # fixed: a buffer, not learned
    assert all(p.requires_grad for up in model.head.up_skips for p in up.parameters())
    x = torch.randn(1, 3, 4, 5)
    learned = tiny("fcn8s", learn_upsampling="all").head.up_final
    assert torch.allclose(model.head.up_final(x), learned(x), atol=1e-6)  # same bilinear
    y = model.head.up_final(torch.ones(1, 3, 2, 3))
    assert y.shape == (1, 3, 16, 24) and torch.allclose(y[..., 4:12, 4:20], torch.ones(1, 3, 8, 16))
    fixed = tiny("fcn8s", learn_upsampling="none")
    assert not any(list(up.parameters()) for up in fixed.head.up_skips)
    with pytest.raises(ValueError, match="learn_upsampling"):
        tiny("fcn32s", learn_upsampling="intermediate")


def test_fcn_skip_scaling_is_applied() -> None:
    model = tiny("fcn8s").eval()
    seen: list[torch.Tensor] = []
    for score in model.head.score_skips:
        score.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model(x)
        feats = model.encoder(x)
    pooled = [torch.nn.functional.max_pool2d(feats[i], 2) for i in model.head.skip_levels]
    expected = [p * s for p, s in zip(pooled, (0.01, 0.0001))]
    assert all(torch.allclose(a, b) for a, b in zip(seen, expected))
    with pytest.raises(ValueError, match="skip_scales needs one factor per skip"):
        tiny("fcn16s", skip_scales=(0.01, 0.0001))


def test_fcn_pads_and_crops_odd_sizes() -> None:
    model = tiny("fcn8s").eval()
    x = torch.randn(1, 3, 50, 70)
    padded = torch.nn.functional.pad(x, (0, 26, 0, 14))  # to 64 x 96
    with torch.no_grad():
        out = model(x)
        ref = model(padded)[..., :50, :70]
        stretched = tiny("fcn8s", odd_size="resize").eval()(x)
    assert out.shape == (1, 3, 50, 70) and torch.allclose(out, ref, atol=1e-5)
    assert not torch.allclose(out, stretched, atol=1e-3)


def test_fcn_rejects_other_strides() -> None:
    with pytest.raises(ValueError, match="output_stride must be 32"):
        tiny("fcn8s", output_stride=16)
