"""PSPNet's ``pool_window``: pyramid cells of a fixed size, so whole images pool as crops did.

The default, ``"train"``, records the training maps' size; pixels give it; None divides each
input (adaptive bins). Each test compares with a model whose window is given, or with a
brute-force block mean.
"""

from __future__ import annotations

import pytest
import torch

from seglab.models import create_model, main_logits
from seglab.models.pspnet import PyramidPooling
from tests.models.test_crop_whole import CROP, TEST, crop_train, dice, pattern, predict_tiled

RESNET = dict(encoder_name="test_resnet", channels=16)  # deepest map at stride 8


def pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    """PSPNet with adaptive bins and one with 64-pixel cells, same weights."""
    torch.manual_seed(0)
    plain = create_model("pspnet", 2, **RESNET, pool_window=None).eval()
    fixed = create_model("pspnet", 2, **RESNET, pool_window=64).eval()
    fixed.load_state_dict(plain.state_dict())
    return plain, fixed


def trained_on(*sizes: tuple[int, int]) -> torch.nn.Module:
    """The default PSPNet after one training forward at each ``(h, w)``, weights as ``pair``'s."""
    torch.manual_seed(0)
    model = create_model("pspnet", 2, **RESNET).train()
    with torch.no_grad():
        for h, w in sizes:
            model(torch.randn(2, 3, h, w))
    recorded = model.head.ppm.train_map.clone()
    model.load_state_dict({**pair()[0].state_dict(), "head.ppm.train_map": recorded})
    return model.eval()


@torch.no_grad()
def test_the_default_pools_whole_images_in_the_cells_of_its_training_size():
    plain, fixed = pair()
    whole = torch.randn(1, 3, 256, 192)
    model = trained_on((64, 64), (64, 64))
    assert model.state_dict()["head.ppm.train_map"].tolist() == [8, 8]  # stride-8 map of 64 px
    torch.testing.assert_close(main_logits(model(whole)), main_logits(fixed(whole)), rtol=0, atol=0)
    assert not torch.allclose(main_logits(model(whole)), main_logits(plain(whole)), atol=1e-4)


@torch.no_grad()
def test_before_training_or_after_several_sizes_the_default_divides_each_input():
    plain, _ = pair()
    whole = torch.randn(1, 3, 256, 192)
    for model in (trained_on(), trained_on((64, 64), (96, 64))):
        torch.testing.assert_close(
            main_logits(model(whole)), main_logits(plain(whole)), rtol=0, atol=0
        )
    assert trained_on((64, 64), (96, 64), (64, 64)).head.ppm.window is None  # stays off


def test_a_recorded_non_square_window_gives_each_side_its_cells():
    ppm = PyramidPooling(4, bins=(1, 2), window="train").train()
    ppm(torch.randn(2, 4, 8, 6))
    x = torch.randn(1, 4, 32, 24)
    blocks = lambda kh, kw: x.reshape(1, 4, 32 // kh, kh, 24 // kw, kw).mean((3, 5))  # noqa: E731
    assert torch.allclose(ppm.pool(x, 1), blocks(8, 6), atol=1e-6)  # 4 x 4 cells
    assert torch.allclose(ppm.pool(x, 2), blocks(4, 3), atol=1e-6)


@torch.no_grad()
def test_the_recorded_window_is_saved_with_the_weights_and_old_ones_load(tmp_path):
    model, whole = trained_on((64, 96)), torch.randn(1, 3, 200, 136)
    torch.save(model.state_dict(), tmp_path / "psp.pt")
    fresh = create_model("pspnet", 2, **RESNET).eval()
    fresh.load_state_dict(torch.load(tmp_path / "psp.pt"))
    assert fresh.head.ppm.window == (8, 12)
    torch.testing.assert_close(main_logits(fresh(whole)), main_logits(model(whole)), rtol=0, atol=0)
    old = {k: v for k, v in model.state_dict().items() if not k.endswith("train_map")}
    fresh.load_state_dict(old)  # written before the buffer existed: strict, unrecorded
    assert fresh.head.ppm.window is None
    adaptive = create_model("pspnet", 2, **RESNET, pool_window=None)
    adaptive.load_state_dict(model.state_dict())  # the window it was built with governs
    assert adaptive.head.ppm.window is None


def test_checkpoints_of_earlier_defaults_rebuild_adaptive_bins():
    assert create_model("pspnet", 2, **RESNET, defaults_version=3).head.ppm.learns_window is False
    assert create_model("pspnet", 2, **RESNET).head.ppm.learns_window


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
    [
        (60, "multiple of the deepest map's stride 8"),
        (0, "positive multiple"),
        (32, "bin 6"),
        ("crop", "give 'train'"),
        (True, "give 'train'"),
    ],
)
def test_pool_window_errors(window, match):
    with pytest.raises(ValueError, match=match):
        create_model("pspnet", 2, **RESNET, pool_window=window)


@pytest.mark.parametrize("window", [CROP, "train"])
def test_crop_trained_with_fixed_cells_scores_whole_image_as_tiles(window):
    model = crop_train("pspnet", pool_window=window)
    image, mask = pattern(TEST, seed=3)
    with torch.no_grad():
        whole = dice(model(image)[0].argmax(0), mask)
        tiled = dice(predict_tiled(model, image), mask)
    assert tiled > 0.7 and abs(whole - tiled) <= 0.02, (whole, tiled)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.load is deprecated, still works
@pytest.mark.parametrize("recorded", [False, True], ids=["given", "recorded"])
def test_fixed_cells_export_and_keep_their_grid_at_other_sizes(tmp_path, recorded):
    """Traced at 64x64 (one cell per bin side), run at sizes with more cells and odd splits."""
    from seglab.inference.export import export_model
    from tests.test_export import check_onnx

    model = trained_on((64, 64)) if recorded else pair()[1]
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


def test_a_fit_checkpoint_keeps_the_training_window(tmp_path):
    """Through the CLI: fitted on 32-pixel images, the checkpoint's PSPNet pools 4x4 cells."""
    from seglab.cli import run_cli
    from seglab.runs.checkpoint import load_task
    from tests.conftest import tiny_args
    from tests.test_reliability_ckpt import CONFIG

    model = [
        "--model.init_args.model=pspnet",
        "--model.init_args.encoder_name=test_resnet",
        "--model.init_args.model_kwargs={channels: 16, aux_head: false}",
        "--trainer.max_epochs=1",
        "--trainer.num_sanity_val_steps=0",
        "--run.num_overlays=0",
    ]
    run = run_cli(["fit", "--config", CONFIG, f"--run.root={tmp_path}", *tiny_args(8), *model])
    task = load_task(run.run_dir / "checkpoints" / "last.ckpt")
    assert task.model.head.ppm.window == (4, 4)  # the stride-8 map of a 32-pixel image
