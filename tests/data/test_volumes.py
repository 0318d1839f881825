"""CT volumes: discovery, loading/orientation, writing, the slice dataset, its cache and split."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from seglab.data.ct.cache import hu_window
from seglab.data.ct.slices import CTSliceDataset, split_cases
from seglab.data.ct.volumes import find_cases, load_case, write_label_volume
from seglab.data.datasets.base import get_dataset_class
from seglab.metrics.volume_evaluator import VolumeEvaluator

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lits_vol117"


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def ras(zyx: np.ndarray) -> np.ndarray:
    """A canonical (z, y, x) array as stored on disk with a RAS affine: (x, y, z)."""
    return np.ascontiguousarray(zyx.transpose(2, 1, 0))


def write_lits_case(
    root: Path,
    n: int,
    depth: int = 6,
    hw: int = 8,
    liver_slices: range | None = None,
    seed: int = 0,
) -> None:
    """A tiny LiTS case: HU image and a label with liver (1) and tumour (2) on some slices."""
    rng = np.random.default_rng([seed, n])
    image = rng.uniform(-300, 300, (depth, hw, hw)).astype(np.float32)
    label = np.zeros((depth, hw, hw), np.uint8)
    for z in liver_slices if liver_slices is not None else range(1, depth - 1):
        label[z, 2:6, 2:6] = 1
        label[z, 3, 3] = 2
    aff = np.diag([0.8, 0.8, 2.5, 1.0])
    save_nifti(root / f"volume-{n}.nii.gz", ras(image), aff)
    save_nifti(root / f"segmentation-{n}.nii.gz", ras(label), aff)


# ---------------------------------------------------------------------------- windowing, split


def test_hu_window_values():
    out = hu_window(np.array([-1000.0, -200.0, 25.0, 250.0, 3000.0]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(hu_window(np.array([0.0]), lo=-100, hi=100), [0.5])
    with pytest.raises(ValueError, match="lo < hi"):
        hu_window(np.zeros(2), 10, 10)


def test_split_is_by_patient_and_deterministic():
    ids = [f"volume-{i}" for i in range(11)]
    parts = split_cases(ids, val_fraction=0.2, test_fraction=0.2, seed=3)
    sets = [set(parts[k]) for k in ("train", "val", "test")]
    assert sum(len(s) for s in sets) == len(ids)
    assert set().union(*sets) == set(ids)
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert len(parts["val"]) == len(parts["test"]) == 2
    assert parts == split_cases(ids, val_fraction=0.2, test_fraction=0.2, seed=3)
    assert any(
        split_cases(ids, 0.2, seed=s)["val"] != split_cases(ids, 0.2, seed=3)["val"]
        for s in range(5)
    )
    fixed = split_cases(ids, val_cases=["volume-4"], seed=0)
    assert fixed["val"] == ["volume-4"] and "volume-4" not in fixed["train"]
    with pytest.raises(ValueError, match="volume-99"):
        split_cases(ids, val_cases=["volume-99"])


def test_dataset_splits_have_disjoint_patients(tmp_path):
    root = tmp_path / "lits"
    for n in range(5):
        write_lits_case(root, n, depth=4, hw=6)
    kw = dict(
        root=str(root), val_fraction=0.2, test_fraction=0.2, seed=1, cache_dir=str(tmp_path / "c")
    )
    seen = {}
    for split in ("train", "val", "test"):
        ds = CTSliceDataset(split=split, **kw)
        seen[split] = {ds.load(i)["case_id"] for i in range(len(ds))}
        assert seen[split] == set(ds.case_ids)
        assert len(ds) == 4 * len(ds.case_ids)  # every slice of each of its cases
    assert not (
        seen["train"] & seen["val"] or seen["train"] & seen["test"] or seen["val"] & seen["test"]
    )
    assert set().union(*seen.values()) == {f"volume-{n}" for n in range(5)}
    assert len(CTSliceDataset(split="all", **kw)) == 20


# ----------------------------------------------------------------------------- cache, 2.5D, items


def test_cache_second_pass_opens_no_nifti(tmp_path, monkeypatch):
    root = tmp_path / "lits"
    for n in range(3):
        write_lits_case(root, n)
    calls = []
    real_load = nib.load
    monkeypatch.setattr(nib, "load", lambda *a, **k: calls.append(a[0]) or real_load(*a, **k))
    kw = dict(root=str(root), split="all", cache_dir=str(tmp_path / "cache"))
    first = CTSliceDataset(**kw)
    assert len(calls) == 6  # image and label of each case, once
    items = [first.load(i) for i in range(len(first))]
    calls.clear()
    second = CTSliceDataset(**kw)
    again = [second.load(i) for i in range(len(second))]
    assert calls == []
    for a, b in zip(items, again):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["mask"], b["mask"])
    assert isinstance(second._arrays(0)[0], np.memmap)
    # another window is another cache entry; a touched file is re-read
    CTSliceDataset(window=(-100, 100), **kw)
    assert len(calls) == 6
    calls.clear()
    seg = root / "segmentation-1.nii.gz"
    st = seg.stat()
    import os

    os.utime(seg, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    CTSliceDataset(**kw)
    assert sorted(Path(c).name for c in calls) == ["segmentation-1.nii.gz", "volume-1.nii.gz"]


def test_item_format_and_2p5d_channel_order(tmp_path):
    depth = 5
    image = np.zeros((depth, 4, 4), np.float32)
    for z in range(depth):
        image[z] = -200 + 50 * z  # windowed value z / 9
    label = np.zeros((depth, 4, 4), np.uint8)
    label[2, 1:3, 1:3] = 1
    label[2, 1, 1] = 2
    root = tmp_path / "lits"
    save_nifti(root / "volume-3.nii.gz", ras(image), np.diag([0.7, 0.6, 2.0, 1]))
    save_nifti(root / "segmentation-3.nii.gz", ras(label), np.diag([0.7, 0.6, 2.0, 1]))
    cache = str(tmp_path / "cache")
    ds = CTSliceDataset(str(root), split="all", context=3, cache_dir=cache, cache_dtype="float32")

    def chans(sample):
        return [round(float(sample["image"][0, 0, c]) * 9) for c in range(sample["image"].shape[2])]

    first, last = ds.load(0), ds.load(depth - 1)
    assert chans(first) == [0, 0, 1] and chans(last) == [3, 4, 4]
    assert chans(ds.load(2)) == [1, 2, 3]
    ds5 = CTSliceDataset(str(root), split="all", context=5, cache_dir=cache, cache_dtype="float32")
    assert chans(ds5.load(1)) == [0, 0, 1, 2, 3] and chans(ds5.load(4)) == [2, 3, 4, 4, 4]
    s = ds.load(2)
    assert s["image"].shape == (4, 4, 3) and s["image"].dtype == np.float32
    assert s["mask"].dtype == np.int64 and set(np.unique(s["mask"])) == {0, 1}
    assert s["name"] == "volume-3_z0002" and s["case_id"] == "volume-3"
    assert (s["z"], s["depth"]) == (2, depth)
    assert s["spacing"] == pytest.approx((2.0, 0.6, 0.7))
    assert (
        ds.num_classes == 2
        and ds.ignore_index is None
        and ds.class_names == ["background", "liver"]
    )
    multi = CTSliceDataset(str(root), split="all", labels="liver_tumor", cache_dir=cache)
    assert multi.num_classes == 3 and set(np.unique(multi.load(2)["mask"])) == {0, 1, 2}
    item = multi[2]
    assert item["image"].shape == (1, 4, 4) and item["mask"].dtype == torch.int64
    resized = CTSliceDataset(str(root), split="all", slice_size=8, cache_dir=cache)
    r = resized.load(2)
    assert r["image"].shape == (8, 8, 1) and r["mask"].shape == (8, 8)
    assert r["spacing"] == pytest.approx((2.0, 0.3, 0.35))
    assert get_dataset_class("ct_slices") is CTSliceDataset


def test_empty_fraction_and_foreground_weights(tmp_path):
    root = tmp_path / "lits"
    for n in range(4):
        write_lits_case(root, n, depth=20, hw=6, liver_slices=range(5, 9))
    kw = dict(root=str(root), val_fraction=0.25, seed=0, cache_dir=str(tmp_path / "c"))
    full = CTSliceDataset(split="train", **kw)
    assert len(full) == 3 * 20
    some = CTSliceDataset(split="train", empty_fraction=0.25, **kw)
    assert len(some) == 3 * (4 + 4)  # every liver slice, a quarter of the 16 empty ones
    assert [some.load(i)["name"] for i in range(len(some))] == [
        CTSliceDataset(split="train", empty_fraction=0.25, **kw).load(i)["name"]
        for i in range(len(some))
    ]
    assert len(CTSliceDataset(split="val", empty_fraction=0.25, **kw)) == 20  # val keeps all
    weighted = CTSliceDataset(split="train", foreground_fraction=0.5, **kw)
    w, fg = weighted.sample_weights(), weighted.has_liver()
    assert w.shape == (60,) and fg.sum() == 12
    assert w[fg].sum() == pytest.approx(0.5) and w[~fg].sum() == pytest.approx(0.5)
    np.testing.assert_array_equal(full.sample_weights(), np.ones(60))


# ------------------------------------------------------------------------------ discovery, errors


def test_msd_layout_discovery(tmp_path):
    img, lab = np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 3), np.uint8)
    for n in (10, 2):
        save_nifti(tmp_path / "Task03_Liver" / "imagesTr" / f"liver_{n}.nii.gz", img)
        save_nifti(tmp_path / "Task03_Liver" / "labelsTr" / f"liver_{n}.nii.gz", lab)
    for sub in ("imagesTr", "labelsTr"):  # macOS resource forks
        (tmp_path / "Task03_Liver" / sub / "._liver_2.nii.gz").write_bytes(b"\x00\x05\x16\x07junk")
    save_nifti(tmp_path / "Task03_Liver" / "imagesTs" / "liver_99.nii.gz", img)
    cases = find_cases(tmp_path)
    assert [c.case_id for c in cases] == ["liver_2", "liver_10"]
    assert (
        cases[0].image_path.parent.name == "imagesTr"
        and cases[0].label_path.parent.name == "labelsTr"
    )
    unlabelled = find_cases(tmp_path, require_labels=False)
    assert [c.case_id for c in unlabelled] == ["liver_2", "liver_10", "liver_99"]
    assert unlabelled[-1].label_path is None


def test_lits_layout_in_subfolders(tmp_path):
    img, lab = np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 3), np.uint8)
    save_nifti(tmp_path / "Training Batch 1" / "volume-0.nii", img)
    save_nifti(tmp_path / "Training Batch 1" / "segmentation-0.nii", lab)
    save_nifti(tmp_path / "batch2" / "volumes" / "volume-28.nii.gz", img)
    save_nifti(tmp_path / "batch2" / "labels" / "segmentation-28.nii.gz", lab)
    save_nifti(tmp_path / "test" / "test-volume-3.nii", img)  # LiTS test set: no labels
    cases = find_cases(tmp_path)
    assert [c.case_id for c in cases] == ["volume-0", "volume-28"]
    assert cases[1].label_path.name == "segmentation-28.nii.gz"
    ids = [c.case_id for c in find_cases(tmp_path, require_labels=False)]
    assert ids == ["test-volume-3", "volume-0", "volume-28"]


def test_discovery_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_cases(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No CT volumes found.*volume-N"):
        find_cases(tmp_path / "empty")
    img = np.zeros((4, 4, 3), np.float32)
    save_nifti(tmp_path / "a" / "segmentation-5.nii.gz", img)
    with pytest.raises(
        ValueError, match=r"segmentation-5\.nii\.gz has no image \(volume-5\.nii\.gz"
    ):
        find_cases(tmp_path / "a")
    save_nifti(tmp_path / "b" / "volume-7.nii", img)
    with pytest.raises(ValueError, match=r"volume-7\.nii has no label \(segmentation-7\.nii"):
        find_cases(tmp_path / "b")
    assert find_cases(tmp_path / "b", require_labels=False)[0].label_path is None


def test_shape_and_affine_mismatch_errors(tmp_path):
    save_nifti(tmp_path / "s" / "volume-1.nii.gz", np.zeros((4, 4, 3), np.float32))
    save_nifti(tmp_path / "s" / "segmentation-1.nii.gz", np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(
        ValueError, match=r"Shape mismatch.*volume-1\.nii\.gz.*\(4, 4, 3\).*segmentation-1"
    ):
        load_case(find_cases(tmp_path / "s")[0])
    save_nifti(tmp_path / "f" / "volume-1.nii.gz", np.zeros((4, 4, 3), np.float32))
    save_nifti(
        tmp_path / "f" / "segmentation-1.nii.gz",
        np.zeros((4, 4, 3), np.uint8),
        np.diag([-1, 1, 1, 1]),
    )
    with pytest.raises(
        ValueError,
        match=r"(?s)Affine mismatch.*segmentation-1\.nii\.gz.*image.*volume-1.*Re-save the label",
    ):
        load_case(find_cases(tmp_path / "f")[0])


# ------------------------------------------------------------------------ orientation and writing


def test_orientation_is_canonical_whatever_the_storage(tmp_path):
    rng = np.random.default_rng(0)
    zyx = rng.integers(0, 3, (5, 6, 7)).astype(np.uint8)
    sp = (2.5, 0.9, 0.7)
    ref = np.diag([sp[2], sp[1], sp[0], 1.0])
    save_nifti(tmp_path / "a" / "volume-0.nii.gz", ras(zyx).astype(np.float32), ref)
    save_nifti(tmp_path / "a" / "segmentation-0.nii.gz", ras(zyx), ref)
    # same anatomy stored LPS-flipped and with the axes permuted to (z, y, x)
    lps = ras(zyx)[::-1, ::-1, :]
    aff = ref.copy()
    aff[0, 0], aff[1, 1] = -sp[2], -sp[1]
    perm = np.ascontiguousarray(lps.transpose(2, 1, 0))
    aff_perm = aff[:, [2, 1, 0, 3]]
    save_nifti(tmp_path / "b" / "volume-0.nii.gz", perm.astype(np.float32), aff_perm)
    save_nifti(tmp_path / "b" / "segmentation-0.nii.gz", perm, aff_perm)
    a, b = load_case(find_cases(tmp_path / "a")[0]), load_case(find_cases(tmp_path / "b")[0])
    np.testing.assert_array_equal(a.label, zyx)
    np.testing.assert_array_equal(b.label, zyx)
    np.testing.assert_array_equal(b.image, zyx.astype(np.float32))
    assert a.spacing == b.spacing == pytest.approx(sp)


@pytest.mark.parametrize("flip", [False, True])
def test_write_label_volume_keeps_affine(tmp_path, flip):
    rng = np.random.default_rng(1)
    stored = rng.integers(0, 3, (6, 5, 4)).astype(np.uint8)
    aff = np.array(
        [[0.0, 0.0, 2.0, -10.0], [0.0, -0.8, 0.0, 20.0], [0.75, 0.0, 0.0, 5.0], [0, 0, 0, 1]]
    )
    if flip:
        aff[:, 0] *= -1  # a flipped first axis on top of the permutation
    save_nifti(tmp_path / "in" / "volume-12.nii.gz", stored.astype(np.int16), aff)
    save_nifti(tmp_path / "in" / "segmentation-12.nii.gz", stored, aff)
    vol = load_case(find_cases(tmp_path / "in")[0])
    out = write_label_volume(
        vol.label, tmp_path / "in" / "volume-12.nii.gz", tmp_path / "out" / "pred.nii.gz"
    )
    back = nib.load(str(out))
    np.testing.assert_array_equal(np.asarray(back.dataobj), stored)
    np.testing.assert_allclose(back.affine, aff)
    assert back.get_data_dtype() == np.uint8
    (tmp_path / "dir").mkdir()
    named = write_label_volume(
        vol.label, tmp_path / "in" / "segmentation-12.nii.gz", tmp_path / "dir"
    )
    assert named == (tmp_path / "dir" / "segmentation-12.nii.gz").resolve()
    with pytest.raises(ValueError, match="does not fit"):
        write_label_volume(
            vol.label[:-1], tmp_path / "in" / "volume-12.nii.gz", tmp_path / "x.nii.gz"
        )


# ------------------------------------------------------------------------------- real LiTS volume


def _feed(evaluator: VolumeEvaluator, ds: CTSliceDataset, pred_of) -> None:
    loader = DataLoader(ds, batch_size=24, shuffle=True, generator=torch.Generator().manual_seed(0))
    for batch in loader:
        m = batch["meta"]
        evaluator.update(m["case_id"], m["z"], m["depth"], m["spacing"], pred_of(m), batch["mask"])


def test_real_lits_volume_dice(tmp_path):
    if not REAL.is_dir():
        pytest.skip(f"{REAL} is not present on this machine")
    root = tmp_path / "lits"
    root.mkdir()
    (root / "volume-117.nii.gz").symlink_to(REAL / "image.nii.gz")
    (root / "segmentation-117.nii.gz").symlink_to(REAL / "label.nii.gz")
    ds = CTSliceDataset(str(root), split="all", labels="liver_tumor", cache_dir=str(tmp_path / "c"))
    assert ds.case_ids == ["volume-117"] and len(ds) == 128 and ds.num_classes == 3
    gt = load_case(find_cases(root)[0]).label  # (z, y, x)

    ev = VolumeEvaluator(lcc_variants=(False,))
    _feed(ev, ds, lambda m: torch.from_numpy(gt[np.asarray(m["z"])].astype(np.int64)))
    res = ev.compute()
    assert res["liver/dice_per_case"] == 1.0 and res["liver/dice_global"] == 1.0
    assert res["tumor/dice_per_case"] == 1.0 and res["liver/hd95"] == 0.0
    assert res["num_cases"] == 1 and res["num_incomplete"] == 0

    shifted = np.zeros_like(gt)
    shifted[2:, :, 3:] = gt[:-2, :, :-3]  # 2 slices along z, 3 voxels along x
    p, g = shifted >= 1, gt >= 1
    expected = 2 * np.logical_and(p, g).sum() / (p.sum() + g.sum())
    ev.reset()
    _feed(ev, ds, lambda m: torch.from_numpy(shifted[np.asarray(m["z"])].astype(np.int64)))
    res = ev.compute()
    assert 0.5 < expected < 0.99
    assert res["liver/dice_per_case"] == pytest.approx(expected, abs=1e-12)
    assert res["liver/dice_global"] == pytest.approx(expected, abs=1e-12)
    assert 1.0 <= res["liver/hd95"] <= np.sqrt(2**2 + 3**2) + 1e-6  # unit spacing, shift (2, 0, 3)
