"""The encoder contract: channels and reductions match real outputs, strides, 1-channel input."""

from __future__ import annotations

import pytest
import torch

from seglab.models.encoders import PlainEncoder, create_encoder


def _check(enc, x):
    feats = enc(x)
    assert len(feats) == len(enc.channels) == len(enc.reductions)
    for f, c, r in zip(feats, enc.channels, enc.reductions):
        assert f.shape[1] == c
        assert f.shape[-1] == pytest.approx(x.shape[-1] / r, abs=1)
        assert f.shape[-2] == pytest.approx(x.shape[-2] / r, abs=1)
    assert enc.output_stride == enc.reductions[-1]


@pytest.mark.parametrize("name", ["unet", "resnet18", "mobilenetv2_050"])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_contract_matches_outputs(name, in_channels):
    kw = {"base_channels": 8} if name == "unet" else {}
    enc = create_encoder(name, in_channels=in_channels, **kw).eval()
    assert enc.in_channels == in_channels
    with torch.no_grad():
        _check(enc, torch.randn(1, in_channels, 64, 96))


@pytest.mark.parametrize("os_", [8, 16, 32])
def test_output_stride_becomes_dilation(os_):
    enc = create_encoder("resnet18", output_stride=os_).eval()
    assert enc.output_stride == os_
    with torch.no_grad():
        feats = enc(torch.randn(1, 3, 64, 64))
    assert feats[-1].shape[-1] == 64 // os_
    dilations = {m.dilation[0] for m in enc.modules() if isinstance(m, torch.nn.Conv2d)}
    assert (max(dilations) > 1) == (os_ < 32)


def test_plain_encoder_levels():
    enc = PlainEncoder(in_channels=1, base_channels=64)
    assert enc.channels == [64, 128, 256, 512, 1024]
    assert enc.reductions == [1, 2, 4, 8, 16]
    dilated = PlainEncoder(in_channels=1, base_channels=4, output_stride=8)
    assert dilated.reductions == [1, 2, 4, 8, 8]
    with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32"):
        PlainEncoder(output_stride=4)


def test_unknown_encoder_lists_close_names():
    with pytest.raises(ValueError, match="resnet18"):
        create_encoder("resnet_18")


def test_hub_weights_offline_say_how_to_pass_a_file(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache
    with pytest.raises(RuntimeError, match="weights=/path/to"):
        create_encoder("resnet18", weights="imagenet")


def test_local_weights_file_loads(tmp_path):
    src = create_encoder("resnet18")
    path = tmp_path / "w.pth"
    torch.save(src.model.state_dict(), path)
    dst = create_encoder("resnet18", weights=str(path))
    for (k, a), b in zip(src.model.state_dict().items(), dst.model.state_dict().values()):
        assert torch.equal(a, b), k
    one = create_encoder("resnet18", in_channels=1, weights=str(path))  # stem adapted
    assert one.model.conv1.weight.shape[1] == 1


def test_missing_weights_file():
    with pytest.raises(FileNotFoundError):
        create_encoder("resnet18", weights="/nonexistent/w.pth")
