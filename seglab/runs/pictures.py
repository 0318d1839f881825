"""Pictures of a run a person wants to look at: overlays, the confusion matrix, a per-class table.

An overlay is ``image | ground truth | prediction``, each panel upscaled (nearest neighbour, an
integer factor) to at least :data:`MIN_PANEL` pixels, titled, with a legend of class names and
colours underneath. Background (class 0) shows the image itself; other classes are blended over
it; ignored pixels are white. For CT the validation slices with the most foreground are drawn
(the first slices of a scan hold no anatomy). :class:`RunPictures` writes them, together with
``confusion_matrix.png`` and ``per_class.csv``, into every run folder (not only to W&B).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from PIL import Image, ImageDraw, ImageFont

from seglab.data.io import safe_child
from seglab.metrics.segmentation import decide
from seglab.runs.confusion import write_confusion

MIN_PANEL = 256
ALPHA = 0.5
IGNORED = (255, 255, 255)
MAX_SCANNED = 2000  # CT: items scanned for the slices with the most foreground


def palette(n: int) -> np.ndarray:
    """A fixed colour per class (class 0 black, it is drawn as the image), ``(n, 3)`` uint8."""
    rng = np.random.default_rng(3)
    colours = rng.integers(40, 256, (max(n, 2), 3)).astype(np.uint8)
    colours[0] = 0
    base = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48)]
    for i, c in enumerate(base[: n - 1]):
        colours[i + 1] = c
    return colours


def to_rgb(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A ``(C, H, W)`` image (any range) as ``(H, W, 3)`` uint8, min-max scaled."""
    img = torch.as_tensor(image).detach().float().cpu()
    img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-6)
    img = img[:3] if img.shape[0] >= 3 else img[:1].expand(3, -1, -1)
    return (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def label_map(mask: torch.Tensor | np.ndarray, task: str = "multiclass") -> np.ndarray:
    """A 2-D integer label map (multilabel: the highest label present + 1, 0 for none)."""
    m = torch.as_tensor(mask).detach().long().cpu()
    if task == "multilabel" and m.ndim == 3:
        k = m.shape[0]
        m = (m.clamp(0, 1) * torch.arange(1, k + 1).view(k, 1, 1)).amax(0)
    elif m.ndim == 3:
        m = m[0]
    return m.numpy().astype(np.int64)


def paint(rgb: np.ndarray, labels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """``rgb`` with every non-background class blended in its colour; out-of-range white."""
    out = rgb.astype(np.float32).copy()
    known = (labels >= 0) & (labels < len(colours))
    fg = known & (labels > 0)
    col = colours[np.clip(labels, 0, len(colours) - 1)].astype(np.float32)
    out[fg] = (1 - ALPHA) * out[fg] + ALPHA * col[fg]
    out[~known] = IGNORED
    return out.round().astype(np.uint8)


def upscale(arr: np.ndarray, min_side: int = MIN_PANEL) -> np.ndarray:
    """Nearest-neighbour upscaling by the smallest integer factor reaching ``min_side``."""
    factor = max(1, -(-min_side // max(1, min(arr.shape[:2]))))
    return arr.repeat(factor, 0).repeat(factor, 1) if factor > 1 else arr


def _font(size: int = 14) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def compose(
    panels: Sequence[np.ndarray],
    titles: Sequence[str],
    legend: Sequence[tuple[str, Sequence[int]]],
    heading: str | None = None,
) -> np.ndarray:
    """Panels side by side, a title above each, an optional heading, a legend underneath."""
    font, gap, bar = _font(), 6, 24
    h = max(p.shape[0] for p in panels)
    w = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    top = bar * (2 if heading else 1)
    rows = max(1, -(-len(legend) // max(1, w // 160)))
    canvas = Image.new("RGB", (w, top + h + rows * bar + 4), "white")
    draw = ImageDraw.Draw(canvas)
    if heading:
        draw.text((4, 4), heading, fill="black", font=font)
    x = 0
    for panel, title in zip(panels, titles):
        draw.text((x + 4, top - bar + 4), title, fill="black", font=font)
        canvas.paste(Image.fromarray(panel), (x, top))
        x += panel.shape[1] + gap
    per_row = max(1, w // 160)
    for i, (name, colour) in enumerate(legend):
        lx, ly = 4 + (i % per_row) * 160, top + h + 4 + (i // per_row) * bar
        draw.rectangle((lx, ly + 2, lx + 16, ly + 18), fill=tuple(int(c) for c in colour))
        draw.rectangle((lx, ly + 2, lx + 16, ly + 18), outline="black")
        draw.text((lx + 22, ly + 3), name, fill="black", font=font)
    return np.asarray(canvas)


def overlay_picture(
    image: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray | None,
    pred: torch.Tensor | np.ndarray,
    class_names: Sequence[str],
    task: str = "multiclass",
    heading: str | None = None,
) -> np.ndarray:
    """``image | ground truth | prediction`` (no truth panel without a target), titled, with
    a legend; each panel at least :data:`MIN_PANEL` pixels on its short side."""
    names = list(class_names)
    if task == "multilabel":
        names = ["none", *names]
    colours = palette(len(names))
    rgb = to_rgb(image)
    panels, titles = [rgb], ["image"]
    if target is not None:
        panels.append(paint(rgb, label_map(target, task), colours))
        titles.append("ground truth")
    panels.append(paint(rgb, label_map(pred, task), colours))
    titles.append("prediction")
    legend = [(f"{names[0]} (image)", (235, 235, 235))]
    legend += [(n, colours[i]) for i, n in enumerate(names) if i > 0]
    return compose([upscale(p) for p in panels], titles, legend, heading)


# --------------------------------------------------------------------------- callback
def pick_items(dataset: Any, n: int) -> list[int]:
    """The first ``n`` items, or for CT slices the ``n`` with the most foreground."""
    if n <= 0 or len(dataset) == 0:
        return []
    base = getattr(dataset, "dataset", dataset)
    if not hasattr(base, "case_ids") or not hasattr(base, "load"):
        return list(range(min(n, len(dataset))))
    step = max(1, len(base) // MAX_SCANNED)
    counts = []
    for i in range(0, len(base), step):
        mask = base.load(i).get("mask")
        counts.append((int((np.asarray(mask) > 0).sum()) if mask is not None else 0, i))
    counts.sort(key=lambda c: (-c[0], c[1]))
    return sorted(i for _, i in counts[:n])


class RunPictures(Callback):
    """Overlays, confusion matrix and per-class table into the run folder.

    After ``fit``: overlays of ``num_overlays`` validation images in ``<run>/predictions/`` and
    the last validation's ``confusion_matrix.png`` / ``per_class.csv`` in ``<run>/``. After
    ``validate`` / ``test``: the same for that split, in the invocation's folder.

    Args:
        run_dir: The folder pictures go to.
        num_overlays: Images drawn (0: none).
    """

    def __init__(self, run_dir: str | Path, num_overlays: int = 4) -> None:
        self.run_dir, self.num_overlays = Path(run_dir), num_overlays
        self.confmat: dict[str, np.ndarray] = {}

    def _keep(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        metrics = getattr(pl_module, f"{stage}_metrics", None)
        cm = getattr(metrics, "confmat", None)
        if trainer.sanity_checking or cm is None or int(cm.sum()) == 0:
            return
        self.confmat[stage] = cm.detach().cpu().numpy().copy()

    # Callbacks run before the module's epoch-end hook, which resets the metrics.
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._keep(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._keep(trainer, pl_module, "test")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.finish(trainer, pl_module, "val", self.run_dir / "predictions")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self.finish(trainer, pl_module, "val", self.run_dir / "overlays")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.finish(trainer, pl_module, "test", self.run_dir / "overlays")

    def finish(
        self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, overlays: Path
    ) -> None:
        if not trainer.is_global_zero:
            return
        if stage in self.confmat:
            write_confusion(self.run_dir, self.confmat[stage], pl_module.class_names)
        dm = trainer.datamodule
        ds = getattr(dm, "datasets", {}).get(stage) if dm is not None else None
        if ds is not None:
            draw_overlays(pl_module, ds, overlays, self.num_overlays)


@torch.no_grad()
def draw_overlays(pl_module: Any, dataset: Any, out_dir: Path, num: int) -> list[Path]:
    """Draws :func:`overlay_picture` for :func:`pick_items` of ``dataset`` into ``out_dir``."""
    items = pick_items(dataset, num)
    if not items:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    was_training = pl_module.training
    pl_module.eval()
    task = pl_module.hparams.task
    written = []
    for i in items:
        item = dataset[i]
        pred = decide(pl_module.predict_logits(item["image"][None].to(pl_module.device)), task)
        name = str(item["meta"].get("name", i))
        pic = overlay_picture(item["image"], item.get("mask"), pred[0], pl_module.class_names, task)
        written.append(safe_child(out_dir, f"{name}.png"))
        Image.fromarray(pic).save(written[-1])
    pl_module.train(was_training)
    return written
