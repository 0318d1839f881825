"""The CT preprocessing cache: HU windowing, in-plane resizing, memory-mapped ``.npy`` entries.

Each volume is loaded once (canonical ``(z, y, x)``, see :mod:`seglab.data.ct.volumes`), windowed
to [0, 1], optionally resized in-plane (:mod:`seglab.data.ct.resample`), and stored as
``<case_id>-<key>.img.npy`` (float16 by default), ``.lab.npy`` (uint8) and ``.json`` (depth,
spacing, liver presence per slice) in ``cache_dir``. The key hashes the resolved image and label
paths with their mtime and size, the window, the slice size, the cache dtype and a format
version, so editing a file or changing a preprocessing parameter makes a new entry (stale
entries are never read; delete the folder to reclaim space). Files are written atomically and
the ``.json`` last, so a half-written entry is never used. Later passes read only the ``.json``
at start-up and open the arrays with ``np.load(mmap_mode="r")``: no NIfTI is opened again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from seglab.data.ct.resample import resize_image_stack, resize_label_stack
from seglab.data.ct.volumes import Case, load_case
from seglab.data.io import atomic_write

log = logging.getLogger(__name__)

CACHE_VERSION = 2


def hu_window(vol: np.ndarray, lo: float = -200.0, hi: float = 250.0) -> np.ndarray:
    """Clips Hounsfield units to ``[lo, hi]`` and maps them linearly to float32 ``[0, 1]``.

    Normalisation (``mean``/``std``) is applied afterwards by the dataset base class.
    """
    if not hi > lo:
        raise ValueError(f"HU window needs lo < hi, got ({lo}, {hi}).")
    v = np.asarray(vol, dtype=np.float32)
    return ((np.clip(v, lo, hi) - np.float32(lo)) / np.float32(hi - lo)).astype(np.float32)


def default_cache_dir(sub: str) -> Path:
    """``$SEGLAB_CACHE/<sub>`` or ``~/.cache/seglab/<sub>``."""
    base = os.environ.get("SEGLAB_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "seglab") / sub


def _file_id(path: Path | None) -> list | None:
    if path is None:
        return None
    st = path.stat()
    return [str(path.resolve()), st.st_mtime_ns, st.st_size]


def cache_key(case: Case, params: dict[str, Any]) -> str:
    """Hash of the case's files (path, mtime, size) and the preprocessing parameters."""
    blob = json.dumps(
        {
            "v": CACHE_VERSION,
            "image": _file_id(case.image_path),
            "label": _file_id(case.label_path),
            **params,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def preprocess_case(
    case: Case,
    cache_dir: Path,
    window: tuple[float, float],
    slice_size: int | None = None,
    dtype: str = "float16",
) -> tuple[dict[str, Any], Path, Path | None]:
    """Builds (or finds) the cache entry of one case.

    Returns:
        ``(meta, image_npy, label_npy or None)``; ``meta`` has ``case_id``, ``depth``, ``shape``
        ``(D, H, W)``, ``spacing`` ``(z, y, x)`` mm (in-plane scaled when resized),
        ``fg`` (1 where the slice holds liver or tumour) and ``max_label``.
    """
    params = {"window": [float(window[0]), float(window[1])], "size": slice_size, "dtype": dtype}
    stem = f"{case.case_id}-{cache_key(case, params)}"
    meta_path = cache_dir / f"{stem}.json"
    img_path = cache_dir / f"{stem}.img.npy"
    lab_path = cache_dir / f"{stem}.lab.npy" if case.label_path is not None else None
    if meta_path.is_file() and img_path.is_file() and (lab_path is None or lab_path.is_file()):
        try:
            return json.loads(meta_path.read_text()), img_path, lab_path
        except (OSError, json.JSONDecodeError):
            pass  # corrupt entry: rebuild it
    log.info("Preprocessing CT case %s into the cache %s", case.case_id, cache_dir)
    vol = load_case(case)
    image = hu_window(vol.image, *window)
    label = vol.label
    spacing = list(vol.spacing)
    if slice_size is not None:
        h, w = image.shape[1:]
        image = resize_image_stack(image, (slice_size, slice_size))
        if label is not None:
            label = resize_label_stack(label, (slice_size, slice_size))
        spacing = [spacing[0], spacing[1] * h / slice_size, spacing[2] * w / slice_size]
    image = image.astype(np.dtype(dtype))
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(img_path, lambda f: np.save(f, image))
    if label is not None:
        atomic_write(lab_path, lambda f: np.save(f, np.ascontiguousarray(label, np.uint8)))
    fg = (label >= 1).reshape(label.shape[0], -1).any(1) if label is not None else None
    meta = {
        "case_id": case.case_id,
        "image_file": str(case.image_path),
        "label_file": None if case.label_path is None else str(case.label_path),
        "depth": int(image.shape[0]),
        "shape": [int(s) for s in image.shape],
        "spacing": [float(s) for s in spacing],
        "fg": None if fg is None else [int(b) for b in fg],
        "max_label": None if label is None else int(label.max(initial=0)),
        "params": params,
    }
    atomic_write(meta_path, lambda f: f.write(json.dumps(meta)), mode="w")
    return meta, img_path, lab_path
