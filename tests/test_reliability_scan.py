"""Failing early and never changing data silently (issue 20, group 5).

Before the first step ``fit`` scans every file of each split (headers, sizes, formats, PNG
checksums): a corrupt file, a lossy (JPEG) mask, an EXIF rotation that the mask does not share,
a duplicate stem and mixed sizes without a crop are reported with the file and the fix, and
``check-data`` reports the same. EXIF orientation is applied to images and masks alike; float
images outside [0, 1] and [0, 255] are refused unless ``image_scale`` is set; float labels with
non-integer values are refused, never rounded.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from seglab.cli import check_data, run_cli
from seglab.data.checks import DataScanError, scan_dataset
from seglab.data.datasets.base import SegDataset, get_dataset_class
from tests.conftest import write_folder_dataset

Folder = get_dataset_class("folder")
QUIET = [
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.num_sanity_val_steps=0",
    "--run.num_overlays=0",
]


def config(tmp_path: Path, root: Path, batch_size: int = 4, transforms=None) -> Path:
    init = {"model": "unet", "num_classes": 3, "model_kwargs": {"base_channels": 4, "depth": 3}}
    data = {"dataset": "folder", "root": str(root), "num_workers": 0, "batch_size": batch_size,
            "dataset_kwargs": {"val_fraction": 0.25}}  # fmt: skip
    if transforms is not None:
        data |= {"train_transforms": transforms, "val_transforms": transforms}
    cfg = {"model": {"class_path": "seglab.tasks.SegmentationTask", "init_args": init},
           "data": data, "trainer": {"max_epochs": 1}}  # fmt: skip
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def check(cfg: Path) -> tuple[int, str]:
    out = io.StringIO()
    return check_data.run(["--config", str(cfg), "--min-size=8"], out=out), out.getvalue()


def fit_refused(tmp_path: Path, cfg: Path, match: str) -> None:
    """``fit`` stops before its first step with the scan's report; no checkpoint is written."""
    root = tmp_path / "runs"
    with pytest.raises(DataScanError, match=match):
        run_cli(["fit", "--config", str(cfg), f"--run.root={root}", *QUIET])
    assert not list(root.rglob("*.ckpt")) and not list(root.rglob("metrics.csv"))


def test_a_corrupt_png_stops_fit_before_the_first_step(tmp_path):
    root = write_folder_dataset(tmp_path / "data", n=8, size=(32, 32))
    bad = root / "images" / "img5.png"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the image data: the CRC no longer fits
    bad.write_bytes(bytes(data))
    cfg = config(tmp_path, root)
    fit_refused(tmp_path, cfg, r"(?s)corrupt file.*img5\.png.*cannot be read.*Re-export")
    code, report = check(cfg)
    assert code == 1 and "img5.png" in report and "[corrupt file]" in report


def test_mixed_sizes_without_a_crop_are_refused_before_the_first_step(tmp_path):
    root = write_folder_dataset(tmp_path / "data", n=8, size=(32, 32))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "img3.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "masks" / "img3.png")
    cfg = config(tmp_path, root)
    fit_refused(tmp_path, cfg, r"(?s)mixed sizes.*32x32 .*8x8 \(img3\.png\).*batches of 4.*Crop")
    code, report = check(cfg)
    assert code == 1 and "[mixed sizes]" in report and "img3.png" in report
    crop = [{"name": "PadIfNeeded", "min_height": 32, "min_width": 32},
            {"name": "CenterCrop", "height": 32, "width": 32}]  # fmt: skip
    ds = Folder(root, "train", val_fraction=0.0)
    assert [p.kind for p in scan_dataset(ds, batch_size=4)] == ["mixed sizes"]
    assert scan_dataset(ds, batch_size=1) == []  # batches of one need no common size
    code, report = check(config(tmp_path, root, transforms=crop))
    assert code == 0, report


def jpeg_with_orientation(path: Path, array: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(array).save(path, exif=exif, quality=100)


def test_exif_rotation_is_applied_to_images_and_masks_alike(tmp_path):
    root = write_folder_dataset(tmp_path / "data", n=2, size=(32, 48))
    pixels = np.zeros((32, 48, 3), np.uint8)
    pixels[:, :8] = 255  # a bright band on the left of the stored pixels
    (root / "images" / "img0.png").unlink()
    jpeg_with_orientation(root / "images" / "img0.jpg", pixels, 6)  # displayed turned 90 cw
    mask = np.zeros((48, 32), np.uint8)  # the mask drawn on the picture as displayed
    mask[:8, :] = 1  # the band is at the top once turned
    Image.fromarray(mask).save(root / "masks" / "img0.png")
    ds = Folder(root, "train", val_fraction=0.0, channels=3)
    sample = ds.load(0)
    assert sample["image"].shape == (48, 32, 3)
    assert sample["image"][:8].mean() > 200 and sample["image"][8:].mean() < 50  # band at top
    assert scan_dataset(ds, batch_size=1) == []
    # a mask drawn on the stored (unrotated) pixels no longer fits: named, with the rotation
    Image.fromarray(np.zeros((32, 48), np.uint8)).save(root / "masks" / "img0.png")
    (found,) = scan_dataset(ds, batch_size=1)
    assert found.kind == "exif rotation" and "EXIF orientation 6" in found.problem
    assert "img0.jpg" in found.file and "exif_transpose" in found.fix


def test_a_duplicate_stem_is_refused_naming_both_files(tmp_path):
    root = write_folder_dataset(tmp_path / "data", n=4, size=(32, 32))
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "images" / "img0.jpg")
    with pytest.raises(ValueError, match=r"img0\.jpg and .*img0\.png have the same stem"):
        Folder(root, "train")
    code, report = check(config(tmp_path, root))
    assert code == 1 and "same stem 'img0'" in report


def test_jpeg_masks_are_refused_as_lossy_not_as_too_many_classes(tmp_path):
    root = write_folder_dataset(tmp_path / "data", n=4, size=(32, 32))
    for p in sorted((root / "masks").glob("*.png")):
        values = np.asarray(Image.open(p)) * 100  # 0 / 100 / 200 labels
        Image.fromarray(values.astype(np.uint8)).save(p.with_suffix(".jpg"), quality=75)
        p.unlink()
    assert len(np.unique(np.asarray(Image.open(root / "masks" / "img1.jpg")))) > 3  # 199..203
    ds = Folder(root, "train", val_fraction=0.0, mask_map={100: 1, 200: 2})
    with pytest.raises(ValueError, match="masks must be lossless"):
        ds.load(0)
    assert {p.kind for p in scan_dataset(ds)} == {"lossy mask"}
    code, report = check(config(tmp_path, root))
    assert code == 1 and "masks must be lossless" in report
    assert "num_classes to at least" not in report


def test_float_images_outside_known_ranges_are_refused_unless_scaled(tmp_path):
    root = write_folder_dataset(tmp_path / "data", n=2, size=(32, 32))
    for i, top in enumerate((25500.0, 200.0)):  # a 0..25500 float TIFF, a 0..200 one
        values = np.linspace(0, top, 32 * 32, dtype=np.float32).reshape(32, 32)
        Image.fromarray(values, mode="F").save(root / "images" / f"img{i}.tif")
        (root / "images" / f"img{i}.png").unlink()
    ds = Folder(root, "train", val_fraction=0.0, channels=1)
    with pytest.raises(ValueError, match=r"Float image img0 .*0\.\.25500.*image_scale"):
        ds[0]
    assert float(ds[1]["image"].max()) == pytest.approx(200 / 255)  # 8-bit range held as float
    scaled = Folder(root, "train", val_fraction=0.0, channels=1, image_scale=1e-4)
    assert float(scaled[0]["image"].max()) == pytest.approx(2.55)


class FloatLabels(SegDataset):
    def __len__(self) -> int:
        return 1

    def load(self, index: int) -> dict:
        mask = np.zeros((8, 8), np.float32)
        mask[2:4, 2:4] = 0.6
        return {"image": np.zeros((8, 8, 3), np.uint8), "mask": mask, "name": "soft"}


def test_float_labels_are_refused_not_rounded():
    with pytest.raises(ValueError, match=r"Mask soft .*non-integer values \(0\.6"):
        FloatLabels()[0]
