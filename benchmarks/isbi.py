"""ISBI 2012 for the quality benchmark: the split, the training stream, whole-image and tiled
evaluation.

The split is seglab's own ``folder`` reader's rule (``val_fraction`` and ``seed`` below), so the
plain loop and seglab's data module hold out the same images. Masks: 255 = cell (class 1),
0 = membrane (class 0); one logit channel, ``logit > 0`` = cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.timing import REPO, logits_of

#: The data set's name in the report.
NAME = "ISBI 2012 EM membranes"
DATA = REPO.parent / "shared" / "data" / "isbi2012_membrane"
#: The folder reader's split rule: this share of the labelled images held out, this seed.
SPLIT = {"val_fraction": 0.2, "seed": 0}
#: Normalisation after scaling to [0, 1] (``experiments/data/isbi.yaml``).
MEAN, STD = 0.5, 0.2
CLASSES = ("membrane", "cell")


@dataclass
class Split:
    """The labelled images as arrays: ``train`` / ``held`` lists of ``(image, mask)``, the
    image as float32 HxW normalised, the mask as int64 HxW class indices."""

    train: list[tuple[np.ndarray, np.ndarray]]
    held: list[tuple[np.ndarray, np.ndarray]]
    train_names: list[str]
    held_names: list[str]


def reader_kwargs() -> dict:
    """Options of seglab's ``folder`` reader for ISBI (the data module uses the same)."""
    return {"mask_map": {255: 1}, "channels": 1, "num_classes": len(CLASSES), **SPLIT}


def load_split(root: Path, eval_crop: int | None = None) -> Split:
    """Reads both splits through seglab's folder reader (no transforms, no normalisation).

    Args:
        root: The ISBI folder (``train/images``, ``train/masks``).
        eval_crop: Keep only the top-left ``eval_crop`` square of each held-out image (a
            short test run); None keeps the whole image.
    """
    from seglab.data.datasets.folder import FolderDataset

    out = {}
    for split in ("train", "val"):
        ds = FolderDataset(str(root), split, **reader_kwargs())
        pairs = []
        for i in range(len(ds)):
            s = ds.load(i)
            image = (s["image"][..., 0].astype(np.float32) / 255.0 - MEAN) / STD
            pairs.append((image, s["mask"].astype(np.int64)))
        out[split] = (pairs, list(ds.stems))
    held = out["val"][0]
    if eval_crop is not None:
        held = [(im[:eval_crop, :eval_crop], m[:eval_crop, :eval_crop]) for im, m in held]
    return Split(out["train"][0], held, out["train"][1], out["val"][1])


def augment(image: np.ndarray, mask: np.ndarray, crop: int, rng: np.random.Generator):
    """A random ``crop`` square, then horizontal and vertical flips and a rotation by a random
    multiple of 90 degrees, each with probability one half (the data module's pipeline)."""
    h, w = mask.shape
    top, left = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
    im, m = image[top : top + crop, left : left + crop], mask[top : top + crop, left : left + crop]
    if rng.random() < 0.5:
        im, m = im[:, ::-1], m[:, ::-1]
    if rng.random() < 0.5:
        im, m = im[::-1], m[::-1]
    if rng.random() < 0.5:
        k = int(rng.integers(0, 4))
        im, m = np.rot90(im, k), np.rot90(m, k)
    return np.ascontiguousarray(im), np.ascontiguousarray(m)


def batches(split: Split, batch: int, crop: int, seed: int, device: str = "cpu"):
    """The training stream of one seed: epochs of shuffled images, ``batch`` crops a step."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(split.train))
        for start in range(0, len(order) - batch + 1, batch):
            pairs = [augment(*split.train[i], crop, rng) for i in order[start : start + batch]]
            x = torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None]
            y = torch.from_numpy(np.stack([p[1] for p in pairs]))
            yield x.to(device), y.to(device)


@torch.no_grad()
def predict(model: nn.Module, image: torch.Tensor, tile: int | str | None) -> torch.Tensor:
    """``(H, W)`` bool cell prediction of one ``(1, 1, H, W)`` image: whole, cut into
    non-overlapping ``tile`` squares predicted as one batch and put back, or (``"slide:N"``)
    in ``N`` windows overlapping by half with their logits averaged (mmsegmentation's slide
    inference)."""
    if tile is None:
        return logits_of(model(image))[0, 0] > 0
    if isinstance(tile, str):  # "slide:128": overlapping windows, logits averaged
        from seglab.models.inference import sliding_window

        size = int(tile.split(":")[1])
        return sliding_window(model, image, (size, size), overlap=0.5)[0, 0] > 0
    _, _, h, w = image.shape
    if h % tile or w % tile:
        raise ValueError(f"Image {h}x{w} is not a multiple of the {tile} tile; pick another.")
    tiles = image.unfold(2, tile, tile).unfold(3, tile, tile)  # 1, 1, nh, nw, t, t
    nh, nw = tiles.shape[2], tiles.shape[3]
    out = logits_of(model(tiles.reshape(-1, 1, tile, tile)))[:, 0] > 0
    return out.reshape(nh, nw, tile, tile).permute(0, 2, 1, 3).reshape(h, w)


def evaluate(
    model: nn.Module, split: Split, tile: int | str | None, device: str
) -> dict[str, float]:
    """Dice and IoU per class and their means over the held-out images, one confusion summed
    over all their pixels (not a mean of per-image scores)."""
    was_training = model.training
    model.eval()
    tp = np.zeros(len(CLASSES))
    fp = np.zeros(len(CLASSES))
    fn = np.zeros(len(CLASSES))
    for image, mask in split.held:
        pred = predict(model, torch.from_numpy(image)[None, None].to(device), tile).cpu().numpy()
        for c in range(len(CLASSES)):
            p, t = pred == bool(c), mask == c
            tp[c] += np.sum(p & t)
            fp[c] += np.sum(p & ~t)
            fn[c] += np.sum(~p & t)
    model.train(was_training)
    dice = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    iou = tp / np.maximum(tp + fp + fn, 1)
    out = {f"dice/{n}": float(d) for n, d in zip(CLASSES, dice, strict=True)}
    out |= {f"iou/{n}": float(v) for n, v in zip(CLASSES, iou, strict=True)}
    return out | {"mIoU": float(iou.mean()), "dice": float(dice.mean())}


def rng_state(seed: int | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The global CPU and CUDA RNG states (after seeding with ``seed`` when given)."""
    if seed is not None:
        torch.manual_seed(seed)
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return torch.get_rng_state(), cuda


def set_rng_state(state: tuple[torch.Tensor, list[torch.Tensor]]) -> None:
    """Restores :func:`rng_state`'s states."""
    torch.set_rng_state(state[0])
    if state[1]:
        torch.cuda.set_rng_state_all(state[1])


def evaluations(crop: int) -> tuple[tuple[str, int | str | None], ...]:
    """The scores taken: whole images, the training crop's tiles, and those tiles overlapping
    by half with their logits averaged (which separates tile-border losses from size effects)."""
    return ("whole", None), ("tiled", crop), ("slide", f"slide:{crop}")
