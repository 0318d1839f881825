"""Dataset interface: readers return raw numpy samples; one wrapper augments and tensorises.

A reader subclasses :class:`SegDataset` and implements ``__len__`` and ``load(i)``, returning
``{"image": HxWxC array (uint8, uint16 or float32), "mask": HxW integer array, "name": str}``
(plus optional ``"weight"`` HxW float32, and any extra ``meta`` entries). The base class applies
the albumentations pipeline to image, mask (and weight map) together and converts to tensors:
``{"image": float (C, H, W), "mask": long (H, W), ["weight": float (H, W)], "meta": {...}}``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from seglab.data.transforms import seed_transform

_DATASETS: dict[str, type[SegDataset]] = {}


def register_dataset(name: str) -> Callable[[type[SegDataset]], type[SegDataset]]:
    """Registers a dataset reader class under ``name``."""

    def wrap(cls: type[SegDataset]) -> type[SegDataset]:
        _DATASETS[name] = cls
        return cls

    return wrap


def get_dataset_class(name: str) -> type[SegDataset]:
    """Looks a dataset reader up by name; the error lists the valid names."""
    from seglab.data.datasets import load_all

    load_all()  # registers every reader

    if name not in _DATASETS:
        close = difflib.get_close_matches(name, _DATASETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown dataset {name!r}.{hint} Valid: {', '.join(sorted(_DATASETS))}.")
    return _DATASETS[name]


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxW or HxWxC array to float ``(C, H, W)``: uint8 / 255, uint16 / 65535, floats as-is."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.dtype == np.uint8:
        arr = image.astype(np.float32) / 255.0
    elif image.dtype == np.uint16:
        arr = image.astype(np.float32) / 65535.0
    else:
        arr = image.astype(np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def scale_float_image(image: np.ndarray, where: str, scale: float | None = None) -> np.ndarray:
    """A float image in the range the model is fed: ``[0, 1]`` as-is, ``[0, 255]`` divided by
    255 (8-bit values held as floats); anything else needs an explicit ``image_scale``.

    Integer images pass through (``image_to_tensor`` scales uint8 and uint16).

    Raises:
        ValueError: A float image outside ``[0, 1]`` and ``[0, 255]`` without ``scale``.
    """
    if image.dtype.kind != "f":
        return image
    if scale is not None:
        return (image.astype(np.float32) * np.float32(scale)).astype(np.float32)
    finite = image[np.isfinite(image)]  # NaN/Inf are reported by the data checks
    if finite.size == 0:
        return image
    lo, hi = float(finite.min()), float(finite.max())
    if lo >= 0 and hi <= 1:
        return image
    if lo >= 0 and hi <= 255:
        return (image.astype(np.float32) / np.float32(255)).astype(np.float32)
    raise ValueError(
        f"Float image {where} has values {lo:g}..{hi:g}, outside [0, 1] and [0, 255], so its "
        "scale is unknown and it would reach the model unscaled. Fix: set "
        f"data.dataset_kwargs.image_scale (e.g. {1 / max(abs(lo), abs(hi)):.3g} maps the "
        "largest magnitude to 1; 1.0 keeps the values as they are), or rescale the files."
    )


def integer_mask(mask: np.ndarray, where: str) -> np.ndarray:
    """The mask as integers; a float mask with non-integer values (0.6) is refused, not rounded.

    Raises:
        ValueError: The mask holds values that are not whole numbers.
    """
    if mask.dtype.kind not in "fc":
        return mask
    finite = np.isfinite(mask)
    if not finite.all() or not np.array_equal(mask, np.round(mask)):
        bad = mask[~finite | (mask != np.round(mask))]
        raise ValueError(
            f"Mask {where} holds non-integer values ({', '.join(f'{v:g}' for v in bad[:3])}, "
            f"{mask.dtype}): labels are class indices and seglab does not round them. Re-export "
            "the labels as integers (PNG L/P, uint8/uint16 TIFF or an integer NIfTI)."
        )
    return mask.astype(np.int64)


def compact_mask(mask: np.ndarray) -> np.ndarray:
    """The mask as uint8 (or uint16) for albumentations when its values fit.

    OpenCV warps int32/int64 arrays by another path than uint8 images and float32 weight maps:
    under Rotate/Affine such a mask lands up to a pixel away from its image.
    """
    mask = np.asarray(mask)
    if mask.dtype in (np.uint8, np.uint16):
        return mask
    if mask.dtype.kind in "iu" and mask.size:
        lo, hi = int(mask.min()), int(mask.max())
        if lo >= 0 and hi <= 255:
            return mask.astype(np.uint8, copy=False)
        if lo >= 0 and hi <= 65535:
            return mask.astype(np.uint16, copy=False)
    return mask


class SegDataset(Dataset):
    """Base reader. Subclasses implement ``__len__`` and ``load``.

    Args:
        transform: An albumentations ``Compose`` (with ``additional_targets={"weight": "mask"}``
            when weight maps are used), or None.
        mean: Per-channel mean subtracted after scaling to [0, 1]; None skips normalisation.
        std: Per-channel standard deviation.
        image_scale: Factor for float images (``image * image_scale``, no range check); None
            takes float images in ``[0, 1]`` as they are, in ``[0, 255]`` divided by 255, and
            refuses any other range (see :func:`scale_float_image`).

    Attributes:
        num_classes: Number of classes in the masks (None when the reader cannot know).
        ignore_index: Mask value that marks pixels to ignore, or None.
        class_names: Names of the classes, or None.
    """

    num_classes: int | None = None
    ignore_index: int | None = None
    class_names: list[str] | None = None
    weight_map: dict[str, float] | None = None  # {w0, sigma}: add the U-Net weight map

    def __init__(
        self,
        transform: Callable[..., dict[str, Any]] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        image_scale: float | None = None,
    ) -> None:
        self.transform = transform
        self.image_scale = image_scale
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32)[:, None, None]
        self._weights: dict[int, np.ndarray] = {}
        self._memory: dict[int, dict[str, Any]] = {}

    def fill_cache(self, max_bytes: float | None = None) -> tuple[int, int]:
        """Reads items into memory once, decoded, before any augmentation (MONAI's
        ``CacheDataset``), until ``max_bytes`` of arrays (None: every item).

        Later reads of a cached item skip the file; each read gets its own copy of the arrays,
        so no transform can alter the cache. Loader workers started after this share it. Integer
        masks are kept in the smallest unsigned type that holds their values (labels unchanged),
        so a read copies and checks a quarter or an eighth of the bytes.

        Returns:
            ``(items cached, bytes of their arrays)``.
        """
        used = 0
        self._memory = {}
        for index in range(len(self)):
            sample = self.load(index)
            if isinstance(sample.get("mask"), np.ndarray):
                sample["mask"] = compact_mask(sample["mask"])
            size = sum(v.nbytes for v in sample.values() if isinstance(v, np.ndarray))
            if max_bytes is not None and used + size > max_bytes:
                break
            self._memory[index], used = sample, used + size
        return len(self._memory), used

    def _read(self, index: int) -> dict[str, Any]:
        """``load(index)``, from the cache when :meth:`fill_cache` kept it."""
        hit = self._memory.get(index) if hasattr(self, "_memory") else None
        if hit is None:
            return self.load(index)
        return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in hit.items()}

    def _weight(self, index: int, mask: np.ndarray) -> np.ndarray:
        """The U-Net weight map of the raw mask, computed once per item."""
        if index not in self._weights:
            from seglab.data.weightmap import unet_weight_map

            self._weights[index] = unet_weight_map(mask, **(self.weight_map or {}))
        return self._weights[index]

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, index: int) -> dict[str, Any]:  # pragma: no cover - abstract
        """Returns the raw sample ``index`` (see the module docstring)."""
        raise NotImplementedError

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        aug_seed = None
        if isinstance(index, tuple):  # (augmentation seed, index) from SeededEpochSampler
            aug_seed, index = index
        sample = self._read(index)
        image, mask, weight = sample["image"], sample.get("mask"), sample.get("weight")
        where = f"{sample.get('name', index)} ({type(self).__name__}[{index}])"
        image = scale_float_image(np.asarray(image), where, getattr(self, "image_scale", None))
        if mask is not None:
            mask = integer_mask(np.asarray(mask), where)
        if self.weight_map is not None and mask is not None and weight is None:
            weight = self._weight(index, mask)
        if self.transform is not None:
            kw: dict[str, Any] = {"image": image}
            if mask is not None:
                kw["mask"] = compact_mask(mask)
            if weight is not None:
                kw["weight"] = weight
            if aug_seed is not None:
                seed_transform(self.transform, aug_seed)
            out = self.transform(**kw)
            image, mask, weight = out["image"], out.get("mask"), out.get("weight")
        x = image_to_tensor(np.asarray(image))
        if self.mean is not None:
            x = (x - self.mean) / self.std
        item: dict[str, Any] = {"image": x}
        if mask is not None:
            item["mask"] = torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64))
        if weight is not None:
            item["weight"] = torch.from_numpy(np.ascontiguousarray(weight).astype(np.float32))
        meta = {k: v for k, v in sample.items() if k not in ("image", "mask", "weight")}
        meta.setdefault("name", str(index))
        meta["index"] = index
        item["meta"] = meta
        return item
