"""The U-Net weight map: class balance plus a border term between touching objects."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from seglab.data.weightmap import class_balance_weights, nearest_two_distances, unet_weight_map


def disc(shape: tuple[int, int], center: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def scene() -> np.ndarray:
    """Two discs 2 px apart (gap at column 46, row 40) and a lone disc far to the right."""
    shape = (96, 160)
    mask = np.zeros(shape, np.uint8)
    for center in [(40, 30), (40, 62), (40, 130)]:
        mask[disc(shape, center, 15)] = 1
    return mask


def test_border_weight_peaks_in_the_gap():
    mask = scene()
    w = unet_weight_map(mask)
    assert w.dtype == np.float32 and w.shape == mask.shape
    gap, lone_border, far = w[40, 46], w[40, 114], w[90, 5]
    assert mask[40, 46] == 0 and mask[40, 114] == 0 and mask[40, 115] == 1
    assert gap > far + 5 and gap > lone_border + 5
    assert lone_border == pytest.approx(far, abs=1e-3)
    row, col = np.unravel_index(np.argmax(w), w.shape)
    assert mask[row, col] == 0 and 44 <= col <= 48 and 25 <= row <= 55


def test_class_balance_weights():
    mask = scene()
    wc = class_balance_weights(mask)
    assert wc.mean() == pytest.approx(1.0)
    assert wc[mask == 1].sum() == pytest.approx(wc[mask == 0].sum())
    ignored = mask.copy()
    ignored[:5] = 255
    w = unet_weight_map(ignored, ignore_index=255)
    assert (w[:5] == 0).all() and w[5:].mean() > 0


def test_single_object_has_no_border_term():
    mask = np.zeros((64, 64), np.uint8)
    mask[disc(mask.shape, (32, 32), 10)] = 1
    np.testing.assert_allclose(unet_weight_map(mask), class_balance_weights(mask), rtol=1e-6)


def test_foreground_selection():
    mask = scene()
    mask[mask.shape[0] // 2 :] *= 2  # lower halves become class 2
    assert np.allclose(unet_weight_map(mask, foreground=[1, 2]), unet_weight_map(mask, None))
    only_one = unet_weight_map(mask, foreground=1)
    assert only_one.shape == mask.shape and only_one.max() > 5


def test_nearest_two_distances_exact_and_cropped():
    rng = np.random.default_rng(0)
    mask = np.zeros((48, 56), bool)
    for center in rng.integers(4, 44, size=(8, 2)):
        mask |= disc(mask.shape, tuple(center), rng.uniform(1.5, 4))
    objects, n = ndimage.label(mask)
    assert n >= 3
    dists = np.sort(
        np.stack([ndimage.distance_transform_edt(objects != k) for k in range(1, n + 1)]), 0
    )
    d1, d2 = nearest_two_distances(objects)
    np.testing.assert_allclose(d1, dists[0])
    np.testing.assert_allclose(d2, dists[1])
    c1, c2 = nearest_two_distances(objects, cutoff=6.0)
    near = dists[1] <= 6.0
    np.testing.assert_allclose(c2[near], dists[1][near])
    assert (c2[~near] > 6.0).all()
