"""Standard dataset readers (VOC, Cityscapes, CamVid, ADE20K) on tiny fixtures in their real
layouts and label encodings, the shared image helpers, and the DeepLab augmentation YAML."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import yaml
from PIL import Image

from seglab.data.datasets.base import get_dataset_class
from seglab.data.datasets.imageio import ensure_dir_exists, read_label, read_rgb

H, W = 20, 24
REPO = Path(__file__).resolve().parents[2]
AUG_YAML = REPO / "experiments" / "data" / "deeplab_aug.yaml"


def _rgb(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _stripes(values: list[int], h: int = H) -> np.ndarray:
    """An ``h x 2*len(values)`` array whose column pair ``k`` holds ``values[k]``."""
    return np.repeat(np.asarray(values)[None, :], 2, axis=1).repeat(h, axis=0)


def _save(arr: np.ndarray, path: Path, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)


def _voc_palette() -> list[int]:
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def _check_common(ds, num_classes: int, n: int) -> None:
    assert len(ds) == n
    assert ds.num_classes == num_classes and ds.ignore_index == 255
    assert len(ds.class_names) == num_classes
    s = ds.load(0)
    assert s["image"].dtype == np.uint8 and s["image"].shape == (H, W, 3)
    assert s["mask"].dtype == np.int64 and s["mask"].shape == (H, W)
    again = ds.load(0)
    assert np.array_equal(s["image"], again["image"]) and np.array_equal(s["mask"], again["mask"])


# ----------------------------------------------------------------------------------- VOC
# Hand-written label: background 0, a person (15) box, a 255 boundary ring around it, a cat (8).
VOC_MASK = np.zeros((H, W), np.uint8)
VOC_MASK[4:16, 4:14] = 255
VOC_MASK[5:15, 5:13] = 15
VOC_MASK[2:6, 18:22] = 8


def _make_voc(tmp_path: Path) -> Path:
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    ids = ["2007_000032", "2007_000039", "2008_000002"]
    for k, i in enumerate(ids):
        _save(_rgb(k), voc / "JPEGImages" / f"{i}.jpg")
        lbl = Image.fromarray(np.roll(VOC_MASK, k, axis=1), mode="P")
        lbl.putpalette(_voc_palette())
        (voc / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        lbl.save(voc / "SegmentationClass" / f"{i}.png")
        _save(np.roll(VOC_MASK, k, axis=0), voc / "SegmentationClassAug" / f"{i}.png", "L")
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text(f"{ids[0]}\n{ids[1]}\n")
    (sets / "val.txt").write_text(f"{ids[2]}\n")
    # DeepLab-style list next to the VOC2012 folder contents.
    (voc / "train_aug.txt").write_text(
        "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ids)
    )
    return tmp_path


def test_voc_reads_palette_indices_and_keeps_255(tmp_path):
    root = _make_voc(tmp_path)
    ds = get_dataset_class("voc")(root=root, split="train")
    _check_common(ds, 21, 2)
    assert ds.class_names[0] == "background" and ds.class_names[15] == "person"
    assert ds.class_names[20] == "tvmonitor"
    s = ds.load(1)
    assert s["name"] == "2007_000039"
    assert np.array_equal(s["mask"], np.roll(VOC_MASK, 1, axis=1).astype(np.int64))
    assert set(np.unique(s["mask"])) == {0, 8, 15, 255}
    # root may also be the VOC2012 folder itself
    val = get_dataset_class("voc")(root=root / "VOCdevkit" / "VOC2012", split="val")
    assert len(val) == 1 and val.load(0)["name"] == "2008_000002"


def test_voc_train_aug(tmp_path):
    root = _make_voc(tmp_path)
    ds = get_dataset_class("voc")(root=root, split="train_aug")
    _check_common(ds, 21, 3)
    assert np.array_equal(ds.load(2)["mask"], np.roll(VOC_MASK, 2, axis=0).astype(np.int64))


def test_voc_errors(tmp_path):
    cls = get_dataset_class("voc")
    with pytest.raises(FileNotFoundError, match="(?s)nope.*Expected layout.*Fix"):
        cls(root=tmp_path / "nope", split="train")
    root = _make_voc(tmp_path)
    with pytest.raises(FileNotFoundError, match="trainval.*Available lists"):
        cls(root=root, split="trainval")
    (root / "VOCdevkit/VOC2012/SegmentationClass/2007_000039.png").unlink()
    with pytest.raises(FileNotFoundError, match="2007_000039.jpg.*has no label"):
        cls(root=root, split="train")


# ---------------------------------------------------------------------------- Cityscapes
CS_IDS = [0, 4, 7, 8, 11, 255, 26, 33, 1, 23, 24, 31]
CS_TRAIN_IDS = [255, 255, 0, 1, 2, 255, 13, 18, 255, 10, 11, 16]


def _make_cityscapes(tmp_path: Path) -> Path:
    frames = [("aachen", "aachen_000000_000019"), ("aachen", "aachen_000001_000019"),
              ("bremen", "bremen_000000_000019")]  # fmt: skip
    for k, (city, stem) in enumerate(frames):
        _save(_rgb(k), tmp_path / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png")
        lbl = _stripes(np.roll(CS_IDS, k).tolist()).astype(np.uint8)
        _save(lbl, tmp_path / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png", "L")
        _save(_rgb(9), tmp_path / "gtFine" / "val" / city / f"{stem}_gtFine_color.png")
    return tmp_path


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    ds = get_dataset_class("cityscapes")(root=_make_cityscapes(tmp_path), split="val")
    _check_common(ds, 19, 3)
    assert ds.class_names[0] == "road" and ds.class_names[18] == "bicycle"
    assert [ds.load(i)["name"] for i in range(3)] == [
        "aachen_000000_000019", "aachen_000001_000019", "bremen_000000_000019"]  # fmt: skip
    for k in range(3):
        assert np.array_equal(ds.load(k)["mask"], _stripes(np.roll(CS_TRAIN_IDS, k).tolist()))


def test_cityscapes_errors(tmp_path):
    cls = get_dataset_class("cityscapes")
    with pytest.raises(FileNotFoundError, match="(?s)missing_root.*leftImg8bit"):
        cls(root=tmp_path / "missing_root", split="val")
    root = _make_cityscapes(tmp_path)
    with pytest.raises(FileNotFoundError, match="leftImg8bit/train"):
        cls(root=root, split="train")
    (root / "gtFine/val/bremen/bremen_000000_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(
        FileNotFoundError, match="bremen_000000_000019_leftImg8bit.png has no label"
    ):
        cls(root=root, split="val")


# -------------------------------------------------------------------------------- CamVid
CAMVID_RAW = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
CAMVID_EXPECTED = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255]


def _make_camvid(tmp_path: Path) -> Path:
    for k, name in enumerate(["0001TP_006690", "0001TP_006720"]):
        _save(_rgb(k), tmp_path / "train" / f"{name}.png")
        _save(_stripes(np.roll(CAMVID_RAW, k).tolist()).astype(np.uint8),
              tmp_path / "trainannot" / f"{name}.png", "L")  # fmt: skip
    return tmp_path


def test_camvid_void_is_ignored(tmp_path):
    ds = get_dataset_class("camvid")(root=_make_camvid(tmp_path), split="train")
    _check_common(ds, 11, 2)
    assert ds.class_names == ["Sky", "Building", "Pole", "Road", "Pavement", "Tree",
                              "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist"]  # fmt: skip
    assert np.array_equal(ds.load(0)["mask"], _stripes(CAMVID_EXPECTED))
    s1 = ds.load(1)
    assert s1["name"] == "0001TP_006720"
    assert np.array_equal(s1["mask"], _stripes(np.roll(CAMVID_EXPECTED, 1).tolist()))


def test_camvid_errors(tmp_path):
    cls = get_dataset_class("camvid")
    with pytest.raises(FileNotFoundError, match="(?s)no_camvid.*annot/<name>.png"):
        cls(root=tmp_path / "no_camvid", split="train")
    root = _make_camvid(tmp_path)
    _save(_rgb(5), root / "train" / "0001TP_009999.png")
    with pytest.raises(FileNotFoundError, match="0001TP_009999.png has no label"):
        cls(root=root, split="train")
    (root / "train" / "0001TP_009999.png").unlink()
    # colour label images are refused with a message naming the file
    _save(_rgb(6), root / "trainannot" / "0001TP_006690.png")
    with pytest.raises(ValueError, match="0001TP_006690.png has mode 'RGB'"):
        cls(root=root, split="train").load(0)


# -------------------------------------------------------------------------------- ADE20K
ADE_RAW = [0, 1, 2, 150, 75, 0, 12, 151, 255, 3, 100, 149]
ADE_EXPECTED = [255, 0, 1, 149, 74, 255, 11, 255, 255, 2, 99, 148]


def _make_ade(tmp_path: Path) -> Path:
    root = tmp_path / "ADEChallengeData2016"
    for k, name in enumerate(["ADE_val_00000001", "ADE_val_00000002"]):
        _save(_rgb(k), root / "images" / "validation" / f"{name}.jpg")
        _save(_stripes(np.roll(ADE_RAW, k).tolist()).astype(np.uint8),
              root / "annotations" / "validation" / f"{name}.png", "L")  # fmt: skip
    return root


def test_ade20k_reduce_zero_label(tmp_path):
    root = _make_ade(tmp_path)
    ds = get_dataset_class("ade20k")(root=root, split="val")
    _check_common(ds, 150, 2)
    assert ds.class_names[0] == "wall" and ds.class_names[149] == "flag"
    assert len(set(ds.class_names)) == 150
    assert np.array_equal(ds.load(0)["mask"], _stripes(ADE_EXPECTED))
    assert np.array_equal(ds.load(1)["mask"], _stripes(np.roll(ADE_EXPECTED, 1).tolist()))
    # the parent folder of ADEChallengeData2016 works too, and 'validation' is accepted
    assert len(get_dataset_class("ade20k")(root=tmp_path, split="validation")) == 2


def test_ade20k_errors(tmp_path):
    cls = get_dataset_class("ade20k")
    with pytest.raises(FileNotFoundError, match="(?s)no_ade.*annotations"):
        cls(root=tmp_path / "no_ade", split="val")
    root = _make_ade(tmp_path)
    with pytest.raises(FileNotFoundError, match="images/training"):
        cls(root=root, split="train")
    (root / "annotations/validation/ADE_val_00000002.png").unlink()
    with pytest.raises(FileNotFoundError, match="ADE_val_00000002.jpg has no label"):
        cls(root=root, split="val")


# ----------------------------------------------------------------------- image helpers
def test_imageio_helpers(tmp_path):
    good = tmp_path / "good.png"
    _save(_rgb(0), good)
    assert read_rgb(good).shape == (H, W, 3)
    bad = tmp_path / "truncated.png"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ValueError, match="truncated.png.*corrupt"):
        read_rgb(bad)
    grey = tmp_path / "grey.png"
    _save(np.full((H, W), 7, np.uint8), grey, "L")
    assert read_label(grey).dtype == np.int64 and set(np.unique(read_label(grey))) == {7}
    with pytest.raises(ValueError, match="good.png has mode 'RGB'.*index"):
        read_label(good, "VOC")
    with pytest.raises(FileNotFoundError, match="(?s)nowhere.*Expected layout:\n  a/b.*Fix"):
        ensure_dir_exists(tmp_path / "nowhere", "Foo", "  a/b")


# ------------------------------------------------------------------------ DeepLab aug
def _build_aug(crop: int | None = None) -> A.Compose:
    specs = yaml.safe_load(AUG_YAML.read_text())["data"]["train_transforms"]
    transforms = []
    for spec in specs:
        spec = dict(spec)
        name = spec.pop("name")
        if crop is not None:
            for key in ("min_height", "min_width", "height", "width"):
                if key in spec:
                    spec[key] = crop
        transforms.append(getattr(A, name)(**spec, strict=True))
    return A.Compose(transforms)


def test_deeplab_aug_yaml_builds():
    specs = yaml.safe_load(AUG_YAML.read_text())["data"]["train_transforms"]
    assert [s["name"] for s in specs] == [
        "RandomScale",
        "PadIfNeeded",
        "RandomCrop",
        "HorizontalFlip",
    ]
    pad = specs[1]
    assert pad["min_height"] == pad["min_width"] == specs[2]["height"] == specs[2]["width"] == 513
    assert pad["fill_mask"] == specs[2]["fill_mask"] == 255
    out = _build_aug()(image=_rgb(0), mask=np.zeros((H, W), np.int64))
    assert out["image"].shape == (513, 513, 3) and out["mask"].shape == (513, 513)
    # only padding was added: labels are the original 0 plus the ignore value
    assert set(np.unique(out["mask"])) <= {0, 255}


def test_deeplab_aug_keeps_alignment_and_labels():
    # 4 coloured blocks (classes 3, 5, 9, 255) so that flips/crops that desync show up.
    mask = np.full((40, 48), 3, np.int64)
    mask[:20, 24:] = 5
    mask[20:, :24] = 9
    mask[20:, 24:] = 255
    colours = {3: (250, 0, 0), 5: (0, 250, 0), 9: (0, 0, 250), 255: (250, 250, 0)}
    image = np.zeros((40, 48, 3), np.uint8)
    for c, rgb in colours.items():
        image[mask == c] = rgb
    aug = _build_aug(crop=32)
    allowed = {3, 5, 9, 255}
    checked = 0
    for seed in range(12):
        aug.set_random_seed(seed)
        out = aug(image=image, mask=mask)
        img, m = out["image"], out["mask"]
        assert img.shape == (32, 32, 3) and m.shape == (32, 32)
        assert set(np.unique(m)) <= allowed
        # Away from block edges (bilinear image vs nearest mask), each pixel's colour must be the
        # colour of its label: a flip/crop/scale applied to only one of them breaks this.
        win = np.lib.stride_tricks.sliding_window_view(np.pad(m, 2, mode="edge"), (5, 5))
        interior = (win == m[:, :, None, None]).all(axis=(2, 3))
        for c in (3, 5, 9):
            sel = interior & (m == c)
            checked += sel.sum()
            assert (np.abs(img[sel].astype(int) - colours[c]) <= 2).all(), (seed, c)
    assert checked > 1000


def test_deeplab_aug_through_dataset(tmp_path):
    ds = get_dataset_class("cityscapes")(
        root=_make_cityscapes(tmp_path), split="val", transform=_build_aug(crop=16)
    )
    item = ds[0]
    assert tuple(item["image"].shape) == (3, 16, 16) and tuple(item["mask"].shape) == (16, 16)
    assert set(item["mask"].unique().tolist()) <= set(CS_TRAIN_IDS)
