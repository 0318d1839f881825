"""``ReachConv2d`` leaves out only taps that read nothing but padding: its outputs and gradients
are ``nn.Conv2d``'s, and it does convolve with fewer taps where a map is smaller than the reach.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seglab.models import create_model, main_logits
from seglab.models.blocks import ConvNormAct, ReachConv2d


def pair(cin: int, cout: int, k: int, d: int, groups: int) -> tuple[nn.Conv2d, ReachConv2d]:
    torch.manual_seed(0)
    full = nn.Conv2d(cin, cout, k, padding=d * (k // 2), dilation=d, groups=groups)
    reach = ReachConv2d(cin, cout, k, padding=d * (k // 2), dilation=d, groups=groups)
    reach.load_state_dict(full.state_dict())
    return full, reach


@pytest.mark.parametrize(
    ("k", "d", "groups", "size"),
    [
        (3, 12, 1, (8, 8)),  # every off-centre tap in the padding: the centre's 1x1 conv
        (3, 12, 6, (8, 8)),  # depthwise-like groups
        (3, 12, 6, (5, 20)),  # rows collapse, columns keep all taps
        (3, 4, 1, (9, 7)),  # nothing collapses
        (7, 1, 1, (2, 3)),  # fc6-like 7x7 on a tiny map: 3x3 and 5x5 of the taps reach
        (5, 3, 2, (7, 4)),  # partial: rows keep +-2 taps, columns +-1
    ],
)
def test_same_outputs_and_gradients_as_the_full_conv(k, d, groups, size):
    full, reach = pair(6, 12, k, d, groups)
    x = torch.randn(2, 6, *size, requires_grad=True)
    xr = x.detach().clone().requires_grad_(True)
    out_full, out_reach = full(x), reach(xr)
    assert torch.allclose(out_full, out_reach, atol=1e-5)
    g = torch.randn_like(out_full)
    out_full.backward(g)
    out_reach.backward(g)
    assert torch.allclose(x.grad, xr.grad, atol=1e-5)
    assert torch.allclose(full.weight.grad, reach.weight.grad, atol=1e-5)
    assert torch.allclose(full.bias.grad, reach.bias.grad, atol=1e-5)


def test_a_map_smaller_than_the_rate_convolves_with_the_centre_tap_only(monkeypatch):
    kernels = []
    conv2d = F.conv2d

    def spy(x, w, *a, **kw):
        kernels.append(tuple(w.shape[-2:]))
        return conv2d(x, w, *a, **kw)

    monkeypatch.setattr(F, "conv2d", spy)
    layer = ConvNormAct(4, 4, 3, dilation=12)
    assert isinstance(layer[0], ReachConv2d)
    layer(torch.randn(2, 4, 8, 8))
    layer(torch.randn(2, 4, 32, 32))
    assert kernels == [(1, 1), (3, 3)]
    assert type(ConvNormAct(4, 4, 3)[0]) is nn.Conv2d  # plain 3x3: nothing to leave out


def test_deeplab_on_a_crop_is_unchanged_by_it():
    """A crop-sized input through DeepLab v3+ (rates 6/12/18 on an 8x8 map) gives the output of
    the same weights with every ReachConv2d computed in full."""
    torch.manual_seed(0)
    model = create_model("deeplabv3plus", 2, encoder_name="test_resnet", channels=16).eval()
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        reached = main_logits(model(x))
        for m in model.modules():
            if isinstance(m, ReachConv2d):
                m.forward = lambda t, m=m: nn.Conv2d.forward(m, t)
        full = main_logits(model(x))
    assert torch.allclose(reached, full, atol=1e-5)
