"""``seglab predict``: PNG masks for a folder of images, NIfTI label volumes for CT."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from PIL import Image

from seglab.cli import main, run_cli
from seglab.data.ct.volumes import to_zyx
from seglab.data.io import load_checkpoint_file
from seglab.tasks import SegmentationTask
from tests.conftest import write_folder_dataset

REPO = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def scrambled(ckpt: Path) -> Path:
    """A copy of the checkpoint with a random 1x1 head and no head bias: a tiny model after a
    step or two predicts one label everywhere (its bias wins), which would hide a misplaced
    or flipped mask."""
    data = load_checkpoint_file(ckpt)
    sd = data["state_dict"]
    head = [k for k, v in sd.items() if v.ndim == 4][-1]  # the last convolution
    sd[head] = torch.randn(sd[head].shape, generator=torch.Generator().manual_seed(0))
    sd[head.replace("weight", "bias")].zero_()
    out = ckpt.with_name("scrambled.ckpt")
    torch.save(data, out)
    return out


def test_predict_writes_a_mask_per_image(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    tiny = [
        "--model.init_args.model_kwargs={base_channels: 4, depth: 3}",
        "--data.dataset_kwargs={size: 32, num_samples: 8}",
        "--data.batch_size=4",
        "--data.num_workers=0",
        *QUIET,
    ]
    fit = run_cli(
        [
            "fit",
            "--config",
            "experiments/default.yaml",
            f"--run.root={tmp_path}",
            "--trainer.max_epochs=1",
            *tiny,
        ]
    )
    ckpt = scrambled(fit.run_dir / "checkpoints" / "last.ckpt")
    images = write_folder_dataset(tmp_path / "new", n=3, size=(37, 45)) / "images"
    pred = run_cli(
        [
            "predict", "--config", "experiments/default.yaml", f"--run.root={tmp_path}",
            f"--ckpt_path={ckpt}", "--data.dataset=folder", "--data.dataset_kwargs={}",
            f"--data.predict_root={images.parent}", "--data.val_batch_size=1",
            "--data.num_workers=0", *QUIET,
        ]
    )  # fmt: skip
    assert pred.run_dir.parent == fit.run_dir / "predictions"  # in the checkpoint's run folder
    masks = sorted((pred.run_dir / "masks").glob("*.png"))
    assert [m.stem for m in masks] == ["img0", "img1", "img2"]
    # each mask is the argmax of the checkpoint's own logits on the image, read and normalised
    # here as the config says (mean 0.5, std 0.25)
    task = SegmentationTask.load_from_checkpoint(ckpt).eval()
    for mask in masks:
        rgb = np.asarray(Image.open(images / f"{mask.stem}.png"), np.float32) / 255.0
        x = torch.from_numpy((rgb - 0.5) / 0.25).permute(2, 0, 1)[None]
        with torch.no_grad():
            expected = task(x).argmax(1)[0].numpy()
        written = np.asarray(Image.open(mask))
        assert written.shape == (37, 45)
        assert len(np.unique(expected)) > 1  # a mask with structure: a flip would show
        assert (written == expected).mean() > 0.999, mask.name  # float ties aside


def test_predict_ct_volumes_keep_the_affine(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("SEGLAB_CACHE", str(tmp_path / "cache"))
    small = [
        "--data.dataset_kwargs.slice_size=32",
        "--model.init_args.model_kwargs.base_channels=4",
        *QUIET,
    ]
    fit = run_cli(
        [
            "fit", "--config", "experiments/unet_liver.yaml", f"--run.root={tmp_path}",
            "--trainer.max_steps=2", "--trainer.limit_val_batches=0",
            "--data.num_workers=0", *small,
        ]
    )  # fmt: skip
    ckpt = scrambled(fit.run_dir / "checkpoints" / "last.ckpt")
    folder = tmp_path / "new_ct"
    folder.mkdir()
    affine = np.diag([-0.7, 0.8, 2.5, 1.0])
    affine[:3, 3] = [10, -20, 30]
    vol = np.random.default_rng(0).normal(0, 100, (32, 32, 9)).astype(np.float32)
    vol[8:20, 10:24] += 60  # a brighter block
    nib.save(nib.Nifti1Image(vol, affine), folder / "patient_a.nii.gz")
    pred = run_cli(
        [
            "predict", "--config", "experiments/unet_liver.yaml", f"--run.root={tmp_path}",
            f"--ckpt_path={ckpt}", f"--data.predict_root={folder}", "--data.num_workers=0", *small,
        ]
    )  # fmt: skip
    out = nib.load(pred.run_dir / "masks" / "patient_a.nii.gz")
    assert out.shape == vol.shape
    np.testing.assert_allclose(out.affine, affine)
    assert set(np.unique(np.asarray(out.dataobj))) <= {0, 1}
    # The checkpoint alone (no config): the same volume, from the checkpoint's CT settings.
    lean = tmp_path / "lean"
    main(["predict", "--ckpt_path", str(ckpt), str(folder), "--output", str(lean)])
    again = nib.load(lean / "masks" / "patient_a.nii.gz")
    np.testing.assert_allclose(again.affine, affine)
    np.testing.assert_array_equal(np.asarray(again.dataobj), np.asarray(out.dataobj))
    # slice by slice (the 32 x 32 grid is the slice size: no resampling), the written labels
    # are the checkpoint's own decisions on the slices of the predict split
    task = SegmentationTask.load_from_checkpoint(ckpt).eval()
    written, _ = to_zyx(out)
    ds = pred.datamodule.datasets["predict"]
    assert len(ds) == 9
    for i in range(len(ds)):
        item = ds[i]
        with torch.no_grad():
            expected = (task(item["image"][None])[0, 0] > 0).numpy()
        assert np.array_equal(written[int(item["meta"]["z"])], expected), i
    assert 0 < written.mean() < 1  # both labels occur
