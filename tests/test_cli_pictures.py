"""Overlays a person can read: large titled panels, a legend, the image as background; CT slices
with anatomy; the confusion matrix written as a picture and tables."""

from __future__ import annotations

import csv

import numpy as np
import torch
from PIL import Image

from seglab.runs.confusion import write_confusion
from seglab.runs.pictures import MIN_PANEL, overlay_picture, palette, pick_items


def test_overlay_panels_are_large_titled_with_the_image_as_background():
    image = torch.rand(3, 40, 30)
    target = torch.zeros(40, 30, dtype=torch.long)
    target[5:15, 5:15] = 2
    pred = target.clone()
    pred[20:30, 10:20] = 1
    names = ["background", "cell", "nucleus"]
    pic = overlay_picture(image, target, pred, names)
    factor = -(-MIN_PANEL // 30)  # 30 px short side -> 9x
    assert pic.shape[1] >= 3 * 30 * factor and pic.shape[0] > 40 * factor  # titles + legend
    top = 24  # one title bar above the panels (no heading)
    rgb = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    lo, hi = rgb.min(), rgb.max()
    scaled = ((rgb.astype(np.float32) - lo) / (hi - lo) * 255).round().astype(np.uint8)
    panel = pic[top : top + 40 * factor : factor, : 30 * factor : factor]
    np.testing.assert_allclose(panel.astype(int), scaled.astype(int), atol=1)  # the image itself
    truth = pic[top : top + 40 * factor : factor, 30 * factor + 6 : 60 * factor + 6 : factor]
    assert (truth[30, 25] == panel[30, 25]).all()  # background: the image, not blended
    colour = palette(3)[2].astype(float)
    expected = 0.5 * panel[8, 8].astype(float) + 0.5 * colour
    np.testing.assert_allclose(truth[8, 8], expected, atol=1)  # class 2 blended in its colour
    legend = pic[-28:]
    for c in palette(3)[1:]:  # a swatch of every foreground colour in the legend strip
        assert (np.abs(legend.astype(int) - c.astype(int)).sum(-1) == 0).any()


def test_ct_overlays_show_the_slices_with_most_foreground():
    class Slices:
        case_ids = ["a"]

        def __init__(self) -> None:
            self.fg = [0, 0, 5, 50, 20, 0, 40]

        def __len__(self) -> int:
            return len(self.fg)

        def load(self, i: int) -> dict:
            mask = np.zeros(100, np.int64)
            mask[: self.fg[i]] = 1
            return {"mask": mask}

    assert pick_items(Slices(), 3) == [3, 4, 6]
    assert pick_items(list(range(10)), 3) == [0, 1, 2]  # other data: the first images


def test_confusion_files(tmp_path):
    cm = np.array([[50, 2, 0], [3, 20, 1], [0, 0, 10]])
    write_confusion(tmp_path, cm, ["bg", "a", "b"])
    with (tmp_path / "per_class.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == ["bg", "a", "b"]
    assert float(rows[1]["IoU"]) == round(20 / (20 + 2 + 4), 4)  # tp / (tp + fp + fn)
    assert float(rows[1]["Dice"]) == round(40 / (40 + 2 + 4), 4)
    assert int(rows[1]["pixels"]) == 24
    with (tmp_path / "confusion_matrix.csv").open() as f:
        assert list(csv.reader(f))[2] == ["a", "3", "20", "1"]
    assert Image.open(tmp_path / "confusion_matrix.png").size[0] >= 200
