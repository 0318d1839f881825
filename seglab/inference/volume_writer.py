"""``seglab predict`` on CT volumes: slice predictions reassembled and written as NIfTI.

Each case's slices are collected as they arrive; once all are in, the label volume is brought
back to the native in-plane size (nearest neighbour, when ``slice_size`` resized the slices)
and written with the input's affine and header, ready to overlay in a viewer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter

from seglab.data.ct.resample import resize_label_stack
from seglab.data.ct.volumes import write_label_volume


def native_shape_zyx(path: str | Path) -> tuple[int, int, int]:
    """``(z, y, x)`` shape of a NIfTI file after canonical reorientation (header only)."""
    img = nib.as_closest_canonical(nib.load(str(path)))
    x, y, z = img.shape[:3]
    return z, y, x


class VolumeWriter(BasePredictionWriter):
    """Writes one ``<case>.nii.gz`` label volume per predicted CT case into ``out_dir``."""

    def __init__(self, out_dir: str | Path) -> None:
        super().__init__(write_interval="batch")
        self.out_dir = Path(out_dir)
        self.pending: dict[str, dict[int, np.ndarray]] = {}
        self.written: list[Path] = []

    def write_on_batch_end(
        self,
        trainer,
        pl_module,
        prediction: dict[str, Any],
        batch_indices,
        batch,
        batch_idx,
        dl_idx,
    ) -> None:
        meta = batch["meta"]
        dataset = trainer.datamodule.datasets["predict"]
        paths = {c.case_id: c.image_path for c in dataset.cases}
        for i, cid in enumerate(meta["case_id"]):
            z, depth = int(meta["z"][i]), int(meta["depth"][i])
            slices = self.pending.setdefault(cid, {})
            slices[z] = prediction["pred"][i].cpu().numpy().astype(np.uint8)
            if len(slices) == depth:
                self.write_case(cid, [slices[k] for k in range(depth)], paths[cid])
                del self.pending[cid]

    def write_case(self, case_id: str, slices: list[np.ndarray], reference: Path) -> Path:
        """Stacks, resizes to the native grid and writes one case."""
        vol = np.stack(slices)
        z, y, x = native_shape_zyx(reference)
        if vol.shape[1:] != (y, x):
            vol = resize_label_stack(vol, (y, x))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        out = write_label_volume(vol, reference, self.out_dir)
        self.written.append(out)
        return out
