"""``seglab predict --ckpt_path CK DIR``: any folder of images, any size, no training config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seglab.cli import main, run_cli
from seglab.models.inference import sliding_window
from seglab.runs.checkpoint import load_task
from tests.conftest import tiny_args

REPO = Path(__file__).resolve().parents[1]
DEFAULT = str(REPO / "experiments" / "default.yaml")
SIZES = {"wide": (37, 45), "tall": (64, 50), "grey": (33, 33), "rgba": (20, 90)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny fit of the default experiment; its ``last.ckpt``."""
    root = tmp_path_factory.mktemp("runs")
    cli = run_cli(
        ["fit", "--config", DEFAULT, f"--run.root={root}", "--trainer.max_epochs=1",
         "--run.num_overlays=1", *tiny_args(8)]
    )  # fmt: skip
    return cli.run_dir / "checkpoints" / "last.ckpt"


def mixed_folder(folder: Path) -> Path:
    """A flat folder of PNGs of four sizes and modes (RGB, greyscale, RGBA)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, (h, w) in SIZES.items():
        shape = {"grey": (h, w), "rgba": (h, w, 4)}.get(name, (h, w, 3))
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


def training_folders(ckpt: Path) -> set[Path]:
    return set(ckpt.parents[2].iterdir())  # runs/<experiment>/*


def test_flat_folder_of_mixed_sizes_with_only_the_checkpoint(trained, tmp_path, capsys):
    images = mixed_folder(tmp_path / "new")
    before = training_folders(trained)
    main(["predict", "--ckpt_path", str(trained), str(images)])
    printed = capsys.readouterr().out
    out = Path(printed.strip().splitlines()[-1].rsplit(" written to ", 1)[1])
    assert out.parent == trained.parents[1] / "predictions"  # the checkpoint's run folder
    assert training_folders(trained) == before  # no new timestamped run
    task = load_task(trained)
    for name, size in SIZES.items():
        mask = np.asarray(Image.open(out / "masks" / f"{name}.png"))
        assert mask.shape == size and mask.max() < 5
        # The mask is the model's argmax on the image normalised as in training (mean/std 0.5/0.25).
        rgb = np.asarray(Image.open(images / f"{name}.png").convert("RGB"), np.float32) / 255
        x = (torch.from_numpy(rgb).permute(2, 0, 1)[None] - 0.5) / 0.25
        with torch.no_grad():
            expected = task.predict_logits(x).argmax(1)[0].numpy()
        np.testing.assert_array_equal(mask, expected)
        overlay = Image.open(out / "overlays" / f"{name}.png")
        assert overlay.height >= 256 and overlay.width >= 2 * 256  # image | prediction


def test_images_subfolder_tta_and_output(trained, tmp_path, capsys):
    mixed_folder(tmp_path / "data" / "images")
    out = tmp_path / "preds"
    main(["predict", "--ckpt_path", str(trained), f"--data.predict_root={tmp_path / 'data'}",
          "--output", str(out), "--tta", "{flip: true}", "--no-overlays"])  # fmt: skip
    assert sorted(p.stem for p in (out / "masks").glob("*.png")) == sorted(SIZES)
    assert not (out / "overlays").exists()
    assert str(out) in capsys.readouterr().out


def test_bad_options_are_refused(trained, tmp_path):
    images = mixed_folder(tmp_path / "new")
    with pytest.raises(ValueError, match="Unknown tta key"):
        main(["predict", "--ckpt_path", str(trained), str(images), "--tta", "{flips: true}",
              "--debug"])  # fmt: skip
    with pytest.raises(SystemExit):
        main(["predict", "--ckpt_path", str(trained), str(images), "--no-such-option"])
    assert not (trained.parents[1] / "predictions" / "masks").exists()


def test_config_predict_reads_predict_root_not_synthetic_images(trained, tmp_path):
    images = mixed_folder(tmp_path / "new")
    pred = run_cli(
        ["predict", "--config", DEFAULT, f"--ckpt_path={trained}", f"--data.predict_root={images}",
         "--data.num_workers=0", "--trainer.enable_progress_bar=false"]
    )  # fmt: skip
    assert pred.run_dir.parent == trained.parents[1] / "predictions"
    assert sorted(p.stem for p in (pred.run_dir / "masks").glob("*.png")) == sorted(SIZES)
    assert sorted(p.stem for p in (pred.run_dir / "overlays").glob("*.png")) == sorted(SIZES)


def test_sliding_window_at_predict_for_a_unet(trained, tmp_path):
    images = mixed_folder(tmp_path / "new")
    out = tmp_path / "tiles"
    main(["predict", "--ckpt_path", str(trained), str(images), "--output", str(out),
          "--sliding_window", "{window: [16, 16], overlap: 0.5}"])  # fmt: skip
    model = load_task(trained).model
    rgb = np.asarray(Image.open(images / "tall.png").convert("RGB"), np.float32) / 255
    x = (torch.from_numpy(rgb).permute(2, 0, 1)[None] - 0.5) / 0.25
    tiled = sliding_window(model, x, window=(16, 16), overlap=0.5).argmax(1)[0].numpy()
    np.testing.assert_array_equal(np.asarray(Image.open(out / "masks" / "tall.png")), tiled)
    assert json.loads((trained.parents[1] / "summary.json").read_text())["epochs"] == 1


@pytest.mark.parametrize("cls_name", ["SegmentationTask", "UNetFamilyTask", "ContextTask"])
def test_tta_and_sliding_window_for_every_family(cls_name):
    import seglab.tasks as tasks
    from seglab.models.inference import predict_tta

    kwargs = {
        "model": "unet",
        "encoder_name": "unet",
        "model_kwargs": {"base_channels": 4, "depth": 3},
    }
    if cls_name == "ContextTask":
        kwargs = {"model": "fcn32s", "encoder_name": "resnet18", "model_kwargs": {"fc_channels": 8}}
    cls = getattr(tasks, cls_name)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 40, 36)
    task = cls(**kwargs, tta={"scales": [0.75, 1.0], "flip": True}).eval()
    expected = predict_tta(task.model, x, scales=(0.75, 1.0), flip=True)
    torch.testing.assert_close(task.predict_logits(x), expected)
    assert not torch.allclose(expected, task.model(x))  # the option changed the logits
    tiled = cls(**kwargs, sliding_window={"window": [16, 16], "overlap": 0.5}).eval()
    tiled.load_state_dict(task.state_dict())
    ref = sliding_window(task.model, x, window=(16, 16), overlap=0.5)
    torch.testing.assert_close(tiled.predict_logits(x), ref)
    with pytest.raises(ValueError, match="Unknown sliding_window key"):
        cls(**kwargs, sliding_window={"window": [16, 16], "stride": 8})
