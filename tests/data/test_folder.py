"""The folder dataset: pairing by stem, splits, palettes, greyscale rules, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from seglab.data.datasets.base import get_dataset_class
from tests.conftest import write_folder_dataset

Folder = get_dataset_class("folder")


def test_pairs_by_stem_and_splits(folder_data):
    train, val = Folder(folder_data, "train"), Folder(folder_data, "val")
    assert len(train) + len(val) == 6 and not set(train.stems) & set(val.stems)
    item = train[0]
    assert item["image"].shape == (3, 40, 44) and item["mask"].shape == (40, 44)
    assert item["image"].dtype.is_floating_point and item["mask"].dtype.is_signed is True
    assert set(item["mask"].unique().tolist()) <= {0, 1, 2}


def test_split_folders_are_used(tmp_path):
    write_folder_dataset(tmp_path / "train", n=3)
    write_folder_dataset(tmp_path / "val", n=2)
    assert len(Folder(tmp_path, "train")) == 3 and len(Folder(tmp_path, "val")) == 2


def test_palette_masks(tmp_path):
    root = write_folder_dataset(tmp_path, n=2)
    colours = [[0, 0, 0], [255, 0, 0]]
    mask = np.zeros((40, 44, 3), np.uint8)
    mask[:10] = colours[1]
    for p in (root / "masks").iterdir():
        Image.fromarray(mask).save(p)
    ds = Folder(root, "train", palette=colours, val_fraction=0.5)
    assert ds[0]["mask"][:10].eq(1).all() and ds[0]["mask"][10:].eq(0).all()
    mask[20, 20] = [1, 2, 3]
    for p in (root / "masks").iterdir():
        Image.fromarray(mask).save(p)
    with pytest.raises(ValueError, match=r"colours \[\(1, 2, 3\)\].*palette"):
        Folder(root, "train", palette=colours, val_fraction=0.5)[0]


def test_mask_map_and_greyscale_to_rgb(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.full((32, 32), 100, np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.where(np.eye(32) > 0, 255, 0).astype(np.uint8)).save(
        root / "masks" / "a.png"
    )
    ds = Folder(root, "predict", channels=3)
    assert ds[0]["image"].shape == (3, 32, 32)
    ds = Folder(root, "train", mask_map={255: 1}, channels=1, val_fraction=0.0)
    assert ds[0]["image"].shape == (1, 32, 32) and ds[0]["mask"].max() == 1


def test_sixteen_bit_keeps_its_range(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.full((32, 32), 65535, np.uint16)).save(root / "images" / "a.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "masks" / "a.png")
    x = Folder(root, "predict", channels=1)[0]["image"]
    assert x.max().item() == pytest.approx(1.0)


def test_errors_name_the_files(tmp_path, folder_data):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Folder(tmp_path / "nope", "train")
    (folder_data / "images" / "lonely.png").write_bytes(
        (folder_data / "images" / "img0.png").read_bytes()
    )
    with pytest.raises(FileNotFoundError, match="lonely"):
        Folder(folder_data, "train")
    (folder_data / "images" / "lonely.png").unlink()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(folder_data / "masks" / "img0.png")
    ds = Folder(folder_data, "train", val_fraction=0.0)
    with pytest.raises(ValueError, match="img0.png.*same size"):
        ds.load(ds.stems.index("img0"))
    (folder_data / "images" / "img1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match="img1.png.*corrupt"):
        ds.load(ds.stems.index("img1"))
