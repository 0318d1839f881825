"""The embedded default data set: procedurally generated shapes, no download.

Each image holds 2-5 shapes over a textured, noisy background. Shape colours are drawn from the
same distribution for every class and the background texture uses the same palette, so colour
alone says nothing: the class is the shape (disc, square, triangle) or its context (a ring is a
disc whose centre shows the background). Deterministic from ``seed``; train and val use disjoint
seeds.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from seglab.data.datasets.base import SegDataset, register_dataset

CLASS_NAMES = ["background", "disc", "square", "triangle", "ring"]


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random colour field: a sum of a few oriented sinusoids per channel, in [0, 1]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.zeros((size, size, 3), np.float32)
    for c in range(3):
        for _ in range(3):
            fx, fy = rng.uniform(-3, 3, 2)
            out[..., c] += rng.uniform(0.04, 0.12) * np.sin(
                2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 6.3)
            )
    return out + rng.uniform(0.2, 0.8, 3)


def make_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One ``(image uint8 HxWx3, mask int64 HxW)`` pair."""
    image = _texture(rng, size)
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    for _ in range(rng.integers(2, 6)):
        cls = int(rng.integers(1, 5))
        r = float(rng.uniform(0.09, 0.17) * size)
        cx, cy = rng.uniform(r, size - r, 2)
        box = [cx - r, cy - r, cx + r, cy + r]
        if cls == 1:
            draw.ellipse(box, fill=cls)
        elif cls == 2:
            a = rng.uniform(0, np.pi / 2)
            pts = [
                (cx + r * np.cos(a + k * np.pi / 2), cy + r * np.sin(a + k * np.pi / 2))
                for k in range(4)
            ]
            draw.polygon(pts, fill=cls)
        elif cls == 3:
            a = rng.uniform(0, 2 * np.pi)
            pts = [
                (cx + r * np.cos(a + k * 2 * np.pi / 3), cy + r * np.sin(a + k * 2 * np.pi / 3))
                for k in range(3)
            ]
            draw.polygon(pts, fill=cls)
        else:
            draw.ellipse(box, fill=cls)
            inner = r * 0.5
            draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    m = np.asarray(mask, dtype=np.int64)
    shade = _texture(rng, size)
    for cls in range(1, 5):
        region = m == cls
        if region.any():
            image[region] = 0.5 * shade[region] + 0.5 * rng.uniform(0.0, 1.0, 3)
    image += rng.normal(0, 0.06, image.shape).astype(np.float32)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), m


@register_dataset("synthetic")
class SyntheticShapes(SegDataset):
    """Procedural multi-class shapes.

    Args:
        split: ``train``, ``val`` or ``test`` (disjoint seeds).
        root: Unused; accepted so every dataset takes the same arguments.
        num_samples: Images in the split; by default 512 for train and 96 otherwise.
        size: Square image side in pixels.
        seed: Base seed.
        num_classes: Fold the labels to fit a model with fewer classes (1 or 2: every shape is
            foreground), for smoke tests of experiments whose real data is absent.
        channels: 3 for RGB, 1 for greyscale.
        **kwargs: ``transform``, ``mean``, ``std`` for :class:`SegDataset`.
    """

    num_classes = 5
    ignore_index = None
    class_names = CLASS_NAMES

    def __init__(
        self,
        split: str = "train",
        root: str | None = None,
        num_samples: int | None = None,
        size: int = 96,
        seed: int = 0,
        num_classes: int = 5,
        channels: int = 3,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.num_classes = max(2, min(num_classes, 5))
        self.class_names = CLASS_NAMES[: self.num_classes]
        self.channels = channels
        offsets = {"train": 0, "val": 1, "test": 2, "predict": 3}
        if split not in offsets:
            raise ValueError(f"split must be one of {list(offsets)}, got {split!r}.")
        self.split, self.size = split, size
        self.n = num_samples or (512 if split == "train" else 96)
        self.seed = seed * 10 + offsets[split]
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.n

    def load(self, index: int) -> dict:
        if index not in self._cache:
            rng = np.random.default_rng([self.seed, index])
            self._cache[index] = make_sample(rng, self.size)
        image, mask = self._cache[index]
        if self.num_classes < 5:
            mask = np.minimum(mask, self.num_classes - 1)
        if self.channels == 1:
            image = image.mean(axis=2, keepdims=True).astype(np.uint8)
        return {"image": image, "mask": mask, "name": f"{self.split}_{index:05d}"}
