"""The confusion matrix of a run as a picture and tables: ``confusion_matrix.png``,
``confusion_matrix.csv`` (pixel counts, rows truth) and ``per_class.csv`` (IoU, Dice, pixels).

W&B media (:mod:`seglab.runs.wandb_media`) and the run folder
(:class:`seglab.runs.pictures.RunPictures`) draw from the same functions.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from seglab.data.io import atomic_write


def confusion_stats(confmat: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class ``iou``, ``dice``, ``support`` (ground-truth pixels) and ``present`` from a
    ``(K, K)`` (rows truth, columns prediction) or multilabel ``(K, 2, 2)`` count matrix."""
    cm = confmat.astype(np.float64)
    if cm.ndim == 3:
        tp, fp, fn = cm[:, 1, 1], cm[:, 0, 1], cm[:, 1, 0]
    else:
        tp = np.diag(cm)
        fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    union = tp + fp + fn
    return {
        "iou": tp / np.maximum(union, 1),
        "dice": 2 * tp / np.maximum(2 * tp + fp + fn, 1),
        "support": tp + fn,
        "present": union > 0,
    }


def confusion_image(confmat: np.ndarray, names: list[str]) -> np.ndarray:
    """A row-normalised confusion-matrix heat map as an RGB uint8 array (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    cm = confmat.astype(np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(names)
    size = max(3.5, 0.6 * k + 2.0)
    fig, ax = plt.subplots(figsize=(size, size), dpi=80)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title("confusion matrix (rows sum to 1)", fontsize=9)
    for i in range(k if k <= 20 else 0):
        for j in range(k):
            colour = "white" if norm[i, j] > 0.5 else "black"
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7, color=colour)
    fig.tight_layout()
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


def class_names_for(confmat: np.ndarray, names: Sequence[str] | None) -> list[str]:
    """``names`` when it has one entry per row of ``confmat``, else ``class_i``."""
    names = list(names or [])
    return names if len(names) == confmat.shape[0] else [f"class_{i}" for i in range(len(confmat))]


def write_confusion(out_dir: str | Path, confmat: np.ndarray, names: Sequence[str]) -> list[Path]:
    """Writes ``per_class.csv`` (IoU, Dice, pixels) and, for a ``(K, K)`` matrix,
    ``confusion_matrix.png`` and ``confusion_matrix.csv`` (raw pixel counts) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = class_names_for(confmat, names)
    stats = confusion_stats(confmat)

    def table(f: Any) -> None:
        w = csv.writer(f)
        w.writerow(["class", "IoU", "Dice", "pixels", "present"])
        for i, n in enumerate(names):
            row = [f"{stats['iou'][i]:.4f}", f"{stats['dice'][i]:.4f}", int(stats["support"][i])]
            w.writerow([n, *row, bool(stats["present"][i])])

    written = [out_dir / "per_class.csv"]
    atomic_write(written[0], table, "w")
    if confmat.ndim == 2:
        Image.fromarray(confusion_image(confmat, names)).save(out_dir / "confusion_matrix.png")
        rows = [["truth \\ predicted", *names]]
        rows += [[n, *map(int, confmat[i])] for i, n in enumerate(names)]
        atomic_write(out_dir / "confusion_matrix.csv", lambda f: csv.writer(f).writerows(rows), "w")
        written += [out_dir / "confusion_matrix.png", out_dir / "confusion_matrix.csv"]
    return written
