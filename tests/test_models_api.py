"""create_model / list_models, odd input sizes and the U-Net parameter count."""

from __future__ import annotations

import pytest
import torch

from seglab.models import create_model, list_models


def test_unknown_name_lists_valid():
    with pytest.raises(ValueError, match="Valid names: .*unet"):
        create_model("unte", 2)


def test_list_models_has_unet():
    assert "unet" in list_models()


def test_unet_paper_parameter_count():
    with torch.device("meta"):
        model = create_model("unet", 2, in_channels=1, base_channels=64)
    n = sum(p.numel() for p in model.parameters())
    assert n == pytest.approx(31.0e6, rel=0.01)


@pytest.mark.parametrize("encoder", ["unet", "resnet18"])
@pytest.mark.parametrize("size", [(32, 32), (67, 93), (97, 64)])
def test_unet_logits_at_input_size(encoder, size):
    kw = {"base_channels": 8} if encoder == "unet" else {}
    model = create_model("unet", 3, encoder_name=encoder, **kw).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 3, *size)
    assert hasattr(model, "encoder") and model.encoder.channels


def test_unet_gradients_reach_every_parameter():
    model = create_model("unet", 2, in_channels=1, base_channels=8).train()
    model(torch.randn(2, 1, 48, 56)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
