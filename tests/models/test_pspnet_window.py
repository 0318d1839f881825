"""PSPNet's ``pool_window``: pyramid cells of a fixed size, so whole images pool as crops did."""

from __future__ import annotations

import pytest
import torch

from seglab.models import create_model, main_logits
from seglab.models.pspnet import PyramidPooling
from tests.models.test_crop_whole import CROP, TEST, crop_train, dice, pattern, predict_tiled

RESNET = dict(encoder_name="test_resnet", channels=16)  # deepest map at stride 8


def pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    """The default PSPNet and one with 64-pixel cells, same weights."""
    torch.manual_seed(0)
    plain = create_model("pspnet", 2, **RESNET).eval()
    fixed = create_model("pspnet", 2, **RESNET, pool_window=64).eval()
    fixed.load_state_dict(plain.state_dict())
    return plain, fixed


@torch.no_grad()
def test_at_its_window_the_pyramid_is_the_papers_and_larger_inputs_get_more_cells():
    plain, fixed = pair()
    crop = torch.randn(2, 3, 64, 64)
    assert torch.equal(main_logits(plain(crop)), main_logits(fixed(crop)))
    whole = torch.randn(1, 3, 256, 256)
    assert not torch.allclose(main_logits(plain(whole)), main_logits(fixed(whole)), atol=1e-4)


def test_fixed_cells_are_block_means():
    """Against a brute-force mean of each block: 8-position window, bins 1 and 2."""
    ppm = PyramidPooling(4, bins=(1, 2), window=8)
    x = torch.randn(1, 4, 32, 24)
    blocks = lambda k: x.reshape(1, 4, 32 // k, k, 24 // k, k).mean((3, 5))  # noqa: E731
    assert torch.allclose(ppm.pool(x, 1), blocks(8), atol=1e-6)
    assert torch.allclose(ppm.pool(x, 2), blocks(4), atol=1e-6)
    assert ppm.pool(x[..., :5, :5], 1).shape[-2:] == (1, 1)  # below one window: one cell
    assert ppm.pool(x[..., :20, :12], 1).shape[-2:] == (3, 2)  # 2.5 and 1.5 cells: half up
    assert torch.allclose(
        PyramidPooling(4, bins=(2,)).pool(x, 2),
        x.reshape(1, 4, 2, 16, 2, 12).mean((3, 5)),
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("window", "match"),
    [(60, "multiple of the deepest map's stride 8"), (0, "positive multiple"), (32, "bin 6")],
)
def test_pool_window_errors(window, match):
    with pytest.raises(ValueError, match=match):
        create_model("pspnet", 2, **RESNET, pool_window=window)


def test_crop_trained_with_fixed_cells_scores_whole_image_as_tiles():
    model = crop_train("pspnet", pool_window=CROP)
    image, mask = pattern(TEST, seed=3)
    with torch.no_grad():
        whole = dice(model(image)[0].argmax(0), mask)
        tiled = dice(predict_tiled(model, image), mask)
    assert tiled > 0.7 and abs(whole - tiled) <= 0.02, (whole, tiled)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.load is deprecated, still works
def test_fixed_cells_export_and_keep_their_grid_at_other_sizes(tmp_path):
    """Traced at 64x64 (one cell per bin side), run at sizes with more cells and odd splits."""
    from seglab.inference.export import export_model
    from tests.test_export import check_onnx

    _, model = pair()
    report = export_model(model, tmp_path, height=64, width=64, name="psp", log=lambda _: None)
    assert report["passed"], report
    sizes = [torch.randn(1, 3, 64, 64), torch.randn(2, 3, 200, 136), torch.randn(1, 3, 96, 256)]
    assert check_onnx(tmp_path / "psp.onnx", model, sizes) <= 1e-4
    ts = torch.jit.load(str(tmp_path / "psp.pt"))
    with torch.no_grad():
        for x in sizes:
            torch.testing.assert_close(ts(x), main_logits(model(x)), rtol=0, atol=1e-4)


def test_the_dynamo_exporter_refuses_fixed_cells_with_the_reason(tmp_path):
    from seglab.inference.export import export_onnx

    _, model = pair()
    with pytest.raises(ValueError, match="Leave out --dynamo"):
        export_onnx(model, tmp_path / "psp.onnx", torch.randn(1, 3, 64, 64), dynamo=True)
