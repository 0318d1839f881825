"""U-Net on a timm encoder: smp's decoder widths, decoded to full resolution by default."""

from __future__ import annotations

import inspect

import pytest
import segmentation_models_pytorch as smp
import torch

from seglab.models import create_model

ENCODER = "test_resnet"  # a ResNet whose shallowest map is at stride 2, like resnet18's


def decoder_output(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.decoder(model.encoder(x))


def test_default_widths_are_smps_and_decode_to_the_input_size():
    model = create_model("unet", 2, ENCODER).eval()
    smp_default = inspect.signature(smp.Unet).parameters["decoder_channels"].default
    widths = [block[-1].out_channels for block in model.decoder.blocks]
    assert widths == list(smp_default) == [256, 128, 64, 32, 16]
    x = torch.randn(1, 3, 64, 96)
    assert decoder_output(model, x).shape == (1, 16, 64, 96)  # no logits resize needed
    assert model(torch.randn(1, 3, 67, 93)).shape == (1, 2, 67, 93)


def test_full_resolution_false_is_the_first_rounds_decoder():
    model = create_model("unet", 2, ENCODER, full_resolution=False).eval()
    widths = [block[-1].out_channels for block in model.decoder.blocks]
    assert widths == [128, 64, 32, 16]
    assert decoder_output(model, torch.randn(1, 3, 64, 96)).shape == (1, 16, 32, 48)
    old = create_model("unet", 2, ENCODER, defaults_version=1)
    assert old.state_dict().keys() == model.state_dict().keys()


def test_decoder_channels_must_cover_the_skip_less_level():
    with pytest.raises(ValueError, match="full_resolution"):
        create_model("unet", 2, ENCODER, decoder_channels=[128, 64, 32, 16])
    model = create_model("unet", 2, ENCODER, decoder_channels=[64, 32, 16, 8, 8])
    assert decoder_output(model.eval(), torch.randn(1, 3, 32, 32)).shape == (1, 8, 32, 32)


def test_plain_encoder_is_already_at_full_resolution():
    """``full_resolution=False`` would change nothing on the plain encoder: it raises; version 1
    (the first round) still builds the plain U-Net it built."""
    import pytest

    with pytest.raises(ValueError, match="full_resolution=False changes nothing"):
        create_model("unet", 2, "unet", base_channels=4, depth=3, full_resolution=False)
    old = create_model("unet", 2, "unet", base_channels=4, depth=3, defaults_version=1)
    new = create_model("unet", 2, "unet", base_channels=4, depth=3)
    assert {k: v.shape for k, v in old.state_dict().items()} == {
        k: v.shape for k, v in new.state_dict().items()
    }
