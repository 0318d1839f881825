"""Test-time augmentation and sliding-window inference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seglab.models import create_model
from seglab.models.inference import infer, plain_forward, predict_tta, sliding_window


def pointwise_model() -> nn.Module:
    """A 1x1-conv model: translation- and flip-equivariant, any input size."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 4, 1))


def mirror_symmetric_model() -> nn.Module:
    """3x3 convs whose kernels are left-right symmetric, so the model commutes with a flip."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1))
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Conv2d):
                m.weight.copy_((m.weight + m.weight.flip(-1)) / 2)
    return model


@pytest.fixture(scope="module")
def unet() -> nn.Module:
    torch.manual_seed(0)
    return create_model("unet", 4, base_channels=4, depth=3)


def test_single_scale_no_flip_is_plain_inference(unet: nn.Module) -> None:
    x = torch.randn(2, 3, 67, 93)
    unet.train()
    out = predict_tta(unet, x)
    assert unet.training  # the mode is restored
    unet.eval()
    with torch.no_grad():
        ref = unet(x)
    assert torch.equal(out, ref)
    assert torch.equal(infer(unet, x), ref)


def test_one_window_is_plain_inference(unet: nn.Module) -> None:
    x = torch.randn(1, 3, 48, 64)
    ref = plain_forward(unet, x)
    assert torch.equal(sliding_window(unet, x, window=(48, 64)), ref)
    assert torch.equal(sliding_window(unet, x, window=(100, 100)), ref)


def test_flip_tta_on_symmetric_input_is_symmetric() -> None:
    model = mirror_symmetric_model()
    half = torch.randn(1, 3, 40, 30)
    x = torch.cat([half, half.flip(-1)], dim=-1)
    out = predict_tta(model, x, flip=True)
    assert torch.allclose(out, out.flip(-1), atol=1e-6)
    assert torch.allclose(out, plain_forward(model, x), atol=1e-6)


def test_flip_tta_makes_any_model_flip_equivariant(unet: nn.Module) -> None:
    x = torch.randn(1, 3, 40, 56)
    out = predict_tta(unet, x, flip=True)
    mirrored = predict_tta(unet, x.flip(-1), flip=True)
    assert torch.allclose(mirrored, out.flip(-1), atol=1e-5)


def test_multi_scale_output_size_and_pointwise_identity() -> None:
    model = pointwise_model()
    x = torch.randn(2, 3, 37, 51)
    out = predict_tta(model, x, scales=(0.5, 1.0, 1.5), flip=True)
    assert out.shape == (2, 4, 37, 51)
    flat = torch.full((1, 3, 20, 24), 0.3)  # constant image: every scale sees the same pixel
    assert torch.allclose(
        predict_tta(model, flat, scales=(0.75, 1.25)), plain_forward(model, flat), atol=1e-6
    )


@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.3])
def test_sliding_window_with_pointwise_model_is_plain(overlap: float) -> None:
    model = pointwise_model()
    x = torch.randn(2, 3, 70, 101)
    out = sliding_window(model, x, window=(32, 40), overlap=overlap, batch_size=3)
    assert torch.allclose(out, plain_forward(model, x), atol=1e-6)


def local_model(radius: int = 2) -> nn.Module:
    """``radius`` 3x3 convolutions: each output pixel sees a (2r+1) x (2r+1) neighbourhood."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, 8, 3, padding=1)]
    for _ in range(radius - 1):
        layers += [nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1)]
    layers += [nn.ReLU(), nn.Conv2d(8, 4, 1)]
    return nn.Sequential(*layers)


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """The documented tiling: steps of ``window * (1 - overlap)``, the last one flush."""
    window = min(window, size)
    step = max(1, int(window * (1 - overlap)))
    starts = list(range(0, size - window + 1, step))
    return starts if starts[-1] == size - window else [*starts, size - window]


def exact_region(size: int, window: int, overlap: float, radius: int) -> torch.Tensor:
    """Pixels whose every covering window holds their whole receptive field (a window edge on
    the image border pads exactly as the whole image does)."""
    ok = torch.ones(size, dtype=torch.bool)
    window = min(window, size)
    for t in window_starts(size, window, overlap):
        for p in range(t, t + window):
            inner_top = t > 0 and p - t < radius
            inner_bottom = t + window < size and t + window - 1 - p < radius
            if inner_top or inner_bottom:
                ok[p] = False
    return ok


@pytest.mark.parametrize("overlap", [0.5, 0.75])
def test_sliding_window_equals_whole_image_where_windows_cover_the_receptive_field(overlap):
    radius, window = 2, (24, 32)
    model = local_model(radius)
    x = torch.randn(2, 3, 70, 101)
    out = sliding_window(model, x, window=window, overlap=overlap, batch_size=3)
    whole = plain_forward(model, x)
    rows = exact_region(70, window[0], overlap, radius)
    cols = exact_region(101, window[1], overlap, radius)
    region = rows[:, None] & cols[None, :]
    assert region.float().mean() > 0.3  # a large part of the image is checked exactly
    assert rows[0] and rows[-1] and cols[0] and cols[-1]  # image borders pad exactly
    assert torch.allclose(out[..., region], whole[..., region], atol=1e-5)
    # elsewhere the windows' zero padding shows: the model really sees its neighbourhood
    assert not torch.allclose(out[..., ~region], whole[..., ~region], atol=1e-3)


def test_sliding_window_covers_edges_of_real_model(unet: nn.Module) -> None:
    x = torch.randn(1, 3, 67, 93)
    out = sliding_window(unet, x, window=(32, 48), overlap=0.25)
    assert out.shape == (1, 4, 67, 93) and torch.isfinite(out).all()


def test_infer_combines_tta_and_sliding() -> None:
    model = pointwise_model()
    x = torch.randn(1, 3, 64, 80)
    out = infer(model, x, tta={"flip": True}, sliding={"window": (32, 32), "overlap": 0.5})
    assert torch.allclose(out, plain_forward(model, x), atol=1e-6)


def test_bad_overlap_is_refused(unet: nn.Module) -> None:
    with pytest.raises(ValueError, match="overlap"):
        sliding_window(unet, torch.zeros(1, 3, 32, 32), window=(16, 16), overlap=1.0)
