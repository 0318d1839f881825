"""Property-based tests (hypothesis): readers, augmentation, metrics, losses.

* Readers give back exactly what was written (RGB, 16-bit, palette and mapped masks).
* Augmentation keeps image, mask and weight map aligned pixel for pixel, and never interpolates
  labels into values that were not there (only the ignore fill may appear).
* Metrics do not depend on how an epoch is split into batches, stay in [0, 1], and ignore the
  ignore index completely.
* Losses are finite for any logits and labels (ignored pixels included) and (near) zero at a
  perfect prediction.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from seglab.data.datasets.base import SegDataset, get_dataset_class
from seglab.data.transforms import build_transforms
from seglab.losses import SegLoss
from seglab.metrics.segmentation import SegMetrics

REPO = Path(__file__).resolve().parents[1]
SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
IGNORE = 255
Folder = get_dataset_class("folder")


def masks(k: int, min_side: int = 4, max_side: int = 24):
    return st.tuples(st.integers(min_side, max_side), st.integers(min_side, max_side)).flatmap(
        lambda hw: arrays(np.uint8, hw, elements=st.integers(0, k - 1))
    )


# ------------------------------------------------------------------------------ readers
def _write_pair(root: Path, image: np.ndarray, mask: np.ndarray) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(image).save(root / "images" / "a.png")
    Image.fromarray(mask).save(root / "masks" / "a.png")


@SETTINGS
@given(st.integers(2, 20).flatmap(lambda k: st.tuples(st.just(k), masks(k))), st.data())
def test_folder_reader_round_trip(k_mask, data):
    k, mask = k_mask
    image = data.draw(arrays(np.uint8, (*mask.shape, 3)))
    with tempfile.TemporaryDirectory() as tmp:
        _write_pair(Path(tmp), image, mask)
        sample = Folder(tmp, "train", val_fraction=0.0).load(0)
    assert np.array_equal(sample["image"], image)
    assert sample["mask"].dtype == np.int64 and np.array_equal(sample["mask"], mask)


@SETTINGS
@given(masks(2), st.data())
def test_sixteen_bit_round_trip_keeps_every_value(mask, data):
    image = data.draw(arrays(np.uint16, mask.shape))
    with tempfile.TemporaryDirectory() as tmp:
        _write_pair(Path(tmp), image, mask)
        ds = Folder(tmp, "train", channels=1, val_fraction=0.0)
        raw, item = ds.load(0)["image"], ds[0]["image"]
    assert raw.dtype == np.uint16 and np.array_equal(raw[..., 0], image)
    assert torch.allclose(item[0], torch.from_numpy(image.astype(np.float32) / 65535.0))


@SETTINGS
@given(
    st.integers(2, 6).flatmap(
        lambda k: st.tuples(
            masks(k),
            st.lists(st.tuples(*[st.integers(0, 255)] * 3), min_size=k, max_size=k, unique=True),
        )
    )
)
def test_palette_masks_decode_to_the_indices(mask_palette):
    mask, palette = mask_palette
    colour = np.asarray(palette, np.uint8)[mask]
    with tempfile.TemporaryDirectory() as tmp:
        _write_pair(Path(tmp), np.zeros((*mask.shape, 3), np.uint8), colour)
        got = Folder(tmp, "train", palette=[list(c) for c in palette], val_fraction=0.0).load(0)
    assert np.array_equal(got["mask"], mask)


@SETTINGS
@given(masks(2))
def test_mask_map_turns_0_255_masks_into_0_1(mask):
    with tempfile.TemporaryDirectory() as tmp:
        _write_pair(Path(tmp), np.zeros((*mask.shape, 3), np.uint8), mask * 255)
        got = Folder(tmp, "train", mask_map={255: 1}, val_fraction=0.0).load(0)["mask"]
    assert np.array_equal(got, mask)


# ------------------------------------------------------------------------- augmentation
def noisy_masks(k: int = 6, min_side: int = 8, max_side: int = 32):
    """Label noise from a drawn seed: every pixel differs from its neighbours, so a one-pixel
    shift between image and mask shows (hypothesis shrinks plain arrays to all zeros)."""
    return st.tuples(
        st.integers(min_side, max_side), st.integers(min_side, max_side), st.integers(0, 2**32 - 1)
    ).map(lambda a: np.random.default_rng(a[2]).integers(0, k, (a[0], a[1])).astype(np.uint8))


PAD = {"border_mode": 0, "fill": 0, "fill_mask": IGNORE}
NEAREST = {"interpolation": 0, "mask_interpolation": 0}
# Geometric transforms with nearest neighbours for the image too: pixel-exact correspondence.
EXACT = [
    [{"name": "HorizontalFlip", "p": 1.0}],
    [{"name": "VerticalFlip", "p": 1.0}],
    [{"name": "RandomRotate90", "p": 1.0}],
    [{"name": "Transpose", "p": 1.0}],
    [{"name": "RandomCrop", "height": 16, "width": 16, "pad_if_needed": True, **PAD}],
    [{"name": "PadIfNeeded", "min_height": 30, "min_width": 30, "position": "random", **PAD}],
    [{"name": "RandomScale", "scale_limit": [-0.5, 1.0], "p": 1.0, **NEAREST}],
    [{"name": "ElasticTransform", "alpha": 30, "sigma": 5, "p": 1.0, **NEAREST, **PAD}],
    [{"name": "GridDistortion", "p": 1.0, **NEAREST, **PAD}],
]
# Rotations and affine warps: an int64 mask (what the readers return) takes another OpenCV path
# than the uint8 image and the float32 weight map, and lands up to a pixel away from them.
WARPS = [
    [{"name": "Rotate", "limit": 60, "p": 1.0, **NEAREST, **PAD}],
    [
        {
            "name": "Affine",
            "scale": [0.7, 1.4],
            "translate_percent": 0.1,
            "rotate": [-30, 30],
            "shear": [-10, 10],
            "p": 1.0,
            **NEAREST,
            **PAD,
        }
    ],
]
# Real pipelines: bilinear images, nearest masks. Labels must stay within the original set.
SMOOTH = [
    [{"name": "Rotate", "limit": 45, "p": 1.0, "interpolation": 1, "mask_interpolation": 0, **PAD}],
    [
        {
            "name": "Affine",
            "scale": [0.5, 2.0],
            "rotate": [-20, 20],
            "p": 1.0,
            "interpolation": 1,
            "mask_interpolation": 0,
            **PAD,
        }
    ],
    [
        {
            "name": "ElasticTransform",
            "alpha": 40,
            "sigma": 4,
            "p": 1.0,
            "interpolation": 1,
            "mask_interpolation": 0,
            **PAD,
        }
    ],
]


def deeplab_pipeline(crop: int = 20) -> list[dict[str, Any]]:
    """``experiments/data/deeplab_aug.yaml`` with a small crop."""
    specs = yaml.safe_load((REPO / "experiments" / "data" / "deeplab_aug.yaml").read_text())
    if isinstance(specs, dict):  # a config fragment: data.train_transforms
        specs = specs["data"]["train_transforms"]
    for spec in specs:
        for key in ("min_height", "min_width", "height", "width"):
            if key in spec:
                spec[key] = crop
    return specs


class ArrayDataset(SegDataset):
    """One in-memory sample, through the real ``SegDataset.__getitem__`` path."""

    def __init__(self, image, mask, weight, transform) -> None:
        super().__init__(transform=transform)
        self.sample = {"image": image, "mask": mask, "weight": weight, "name": "x"}

    def __len__(self) -> int:
        return 1

    def load(self, index: int) -> dict[str, Any]:
        return dict(self.sample)


def _encoded(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An image and a weight map that are functions of the mask value at each pixel."""
    image = np.repeat((mask.astype(np.uint8) * 40)[..., None], 3, axis=2)
    weight = (mask.astype(np.float32) * 0.5 + 1.0).astype(np.float32)
    return image, weight


def _assert_aligned(mask: np.ndarray, specs: list[dict[str, Any]], seed: int) -> None:
    image, weight = _encoded(mask)
    tf = build_transforms(specs)
    tf.set_random_seed(seed)
    item = ArrayDataset(image, mask.astype(np.int64), weight, tf)[0]
    m, x, w = item["mask"], item["image"], item["weight"]
    assert m.dtype == torch.int64 and m.shape == x.shape[1:] == w.shape
    valid = m != IGNORE
    assert set(m.unique().tolist()) <= set(np.unique(mask).tolist()) | {IGNORE}
    expected_image = (m[valid] * 40).float() / 255.0
    assert torch.allclose(x[0][valid], expected_image) and torch.equal(x[0], x[2])
    assert torch.equal(w[valid], m[valid].float() * 0.5 + 1.0)


@SETTINGS
@given(noisy_masks(), st.sampled_from(range(len(EXACT))), st.integers(0, 2**31 - 1))
def test_geometric_augmentation_keeps_image_mask_and_weight_aligned(mask, which, seed):
    _assert_aligned(mask, EXACT[which], seed)


@SETTINGS
@given(noisy_masks(), st.sampled_from(range(len(WARPS))), st.integers(0, 2**31 - 1))
def test_rotations_keep_image_mask_and_weight_aligned(mask, which, seed):
    _assert_aligned(mask, WARPS[which], seed)


@SETTINGS
@given(noisy_masks(5), st.sampled_from(range(len(SMOOTH) + 1)), st.integers(0, 2**31 - 1))
def test_labels_are_never_interpolated_into_new_values(mask, which, seed):
    specs = SMOOTH[which] if which < len(SMOOTH) else deeplab_pipeline()
    image, weight = _encoded(mask)
    tf = build_transforms(specs)
    tf.set_random_seed(seed)
    item = ArrayDataset(image, mask.astype(np.int64), weight, tf)[0]
    allowed = set(np.unique(mask).tolist()) | {IGNORE}
    assert set(item["mask"].unique().tolist()) <= allowed
    assert set(item["weight"].unique().tolist()) <= {v * 0.5 + 1.0 for v in allowed} | {IGNORE}


# ------------------------------------------------------------------------------ metrics
def labelled(k: int, ignore_rate: float):
    """Strategy: ``(preds, target)`` of shape (B, H, W) with some pixels ignored in target."""

    def build(shape):
        b, h, w = shape
        pred = arrays(np.int64, shape, elements=st.integers(0, k - 1))
        tgt = arrays(np.int64, shape, elements=st.integers(0, k - 1))
        ign = arrays(np.bool_, shape, elements=st.booleans() if ignore_rate else st.just(False))
        return st.tuples(pred, tgt, ign)

    return st.tuples(st.integers(1, 6), st.integers(1, 8), st.integers(1, 8)).flatmap(build)


def _metrics(k, preds, target, chunks=None):
    m = SegMetrics(k, "multiclass", IGNORE)
    bounds = chunks or [0, preds.shape[0]]
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b > a:
            m.update(torch.from_numpy(preds[a:b]), torch.from_numpy(target[a:b]))
    return m.compute()


@SETTINGS
@given(st.integers(2, 5).flatmap(lambda k: st.tuples(st.just(k), labelled(k, 0.3))), st.data())
def test_metrics_are_invariant_to_the_batch_split_and_bounded(k_batch, data):
    k, (preds, target, ignored) = k_batch
    target = np.where(ignored, IGNORE, target)
    b = preds.shape[0]
    cuts = sorted(data.draw(st.lists(st.integers(0, b), max_size=4)))
    whole = _metrics(k, preds, target)
    split = _metrics(k, preds, target, [0, *cuts, b])
    assert whole.keys() == split.keys()
    for key, value in whole.items():
        assert torch.equal(value, split[key]), key
        assert 0.0 <= float(value) <= 1.0, key


@SETTINGS
@given(st.integers(2, 5).flatmap(lambda k: st.tuples(st.just(k), labelled(k, 0.5))), st.data())
def test_metrics_ignore_the_ignore_index(k_batch, data):
    k, (preds, target, ignored) = k_batch
    target = np.where(ignored, IGNORE, target)
    other = np.where(
        ignored, data.draw(arrays(np.int64, preds.shape, elements=st.integers(0, k - 1))), preds
    )
    base = _metrics(k, preds, target)
    assert {key: float(v) for key, v in _metrics(k, other, target).items()} == {
        key: float(v) for key, v in base.items()
    }
    # the same as scoring only the valid pixels
    valid = ~ignored
    flat = _metrics(k, preds[valid][None, None], target[valid][None, None])
    assert {key: float(v) for key, v in flat.items()} == {key: float(v) for key, v in base.items()}


@SETTINGS
@given(st.integers(2, 5).flatmap(lambda k: st.tuples(st.just(k), labelled(k, 0.0))))
def test_a_perfect_prediction_scores_one(k_batch):
    k, (_, target, _) = k_batch
    scores = _metrics(k, target, target)
    for key in ("pixel_acc", "mean_acc", "mIoU", "dice"):
        assert float(scores[key]) == pytest.approx(1.0)


# ------------------------------------------------------------------------------- losses
TERMS = ["ce", "dice", "focal", "jaccard", "lovasz", "tversky"]


def loss_case(task: str):
    def build(args):
        k, b, h, w = args
        c = 1 if task == "binary" else k
        n_lab = 2 if task == "binary" else k
        logits = arrays(np.float32, (b, c, h, w), elements=st.floats(-30, 30, width=32))
        target = arrays(np.int64, (b, h, w), elements=st.integers(0, n_lab - 1))
        ignored = arrays(np.bool_, (b, h, w))
        return st.tuples(st.just(k), logits, target, ignored)

    return st.tuples(
        st.integers(2, 5), st.integers(1, 3), st.integers(2, 8), st.integers(2, 8)
    ).flatmap(build)


@SETTINGS
@pytest.mark.parametrize("task", ["multiclass", "binary"])
@given(data=st.data(), term=st.sampled_from(TERMS))
def test_losses_are_finite(task, data, term):
    k, logits, target, ignored = data.draw(loss_case(task))
    num_classes = 1 if task == "binary" else k
    target = np.where(ignored, IGNORE, target)
    loss = SegLoss({term: 1.0}, task, num_classes, IGNORE)
    total, parts = loss(torch.from_numpy(logits).requires_grad_(), torch.from_numpy(target))
    assert torch.isfinite(total), (term, float(total))
    total.backward()


@SETTINGS
@pytest.mark.parametrize("task", ["multiclass", "binary"])
@given(data=st.data(), term=st.sampled_from(TERMS))
def test_losses_are_minimal_at_a_perfect_prediction(task, data, term):
    k, logits, target, _ = data.draw(loss_case(task))
    num_classes = 1 if task == "binary" else k
    t = torch.from_numpy(target)
    if task == "binary":
        perfect = (t[:, None].float() * 2 - 1) * 30.0
    else:
        perfect = (torch.nn.functional.one_hot(t, k).permute(0, 3, 1, 2).float() * 2 - 1) * 30.0
    loss = SegLoss({term: 1.0}, task, num_classes, IGNORE)
    best = float(loss(perfect, t)[0])
    assert best == pytest.approx(0.0, abs=1e-3), (term, best)
    assert best <= float(loss(torch.from_numpy(logits), t)[0]) + 1e-6
