"""Seeded augmentation: each item's pipeline draws from one stream that its transforms share."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from seglab.data.datasets.base import get_dataset_class
from seglab.data.transforms import build_transforms, seed_transform

Folder = get_dataset_class("folder")
FLIPS = [{"name": "HorizontalFlip", "p": 0.5}, {"name": "VerticalFlip", "p": 0.5}]
#: Top-left value of a flipped ``arange(16)`` 4x4 image -> (horizontal, vertical) flips.
CORNER = {0: (False, False), 3: (True, False), 12: (False, True), 15: (True, True)}


def test_seeded_flips_fire_independently_and_reproducibly():
    tf = build_transforms(FLIPS)
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    seen = []
    for seed in range(64):
        seed_transform(tf, seed)
        seen.append(CORNER[int(tf(image=image)["image"][0, 0])])
    counts = Counter(seen)
    # Two p=0.5 flips drawn independently: all four outcomes, each about 16 of 64 times.
    assert set(counts) == set(CORNER.values())
    assert all(6 <= c <= 26 for c in counts.values()), counts
    seed_transform(tf, 7)
    first = tf(image=image)["image"]
    seed_transform(tf, 7)
    assert np.array_equal(first, tf(image=image)["image"])


def test_the_dataset_reseeds_each_item_with_one_stream(folder_data):
    ds = Folder(folder_data, "train", transform=build_transforms(FLIPS))
    x = Folder(folder_data, "train")[0]["image"]
    flipped = {
        (h, v): x.flip([d for d, on in ((-1, h), (-2, v)) if on]) for h, v in CORNER.values()
    }
    outcomes = Counter()
    for seed in range(48):  # what SeededEpochSampler yields: (augmentation seed, index)
        got = ds[(seed, 0)]["image"]
        outcomes.update(k for k, want in flipped.items() if torch.equal(got, want))
    assert set(outcomes) == set(CORNER.values()), outcomes
    assert torch.equal(ds[(5, 0)]["image"], ds[(5, 0)]["image"])
