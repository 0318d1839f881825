"""Your own data: an ``images/`` and a ``masks/`` folder matched by file stem.

Layouts accepted under ``root``: ``<split>/images`` + ``<split>/masks`` when the split folder
exists, otherwise ``images`` + ``masks`` (or ``train/images`` + ``train/masks`` when no ``val``
folder exists) split by ``val_fraction`` with a fixed seed. The ``predict`` split reads
``root/images`` or, without it, the image files of ``root`` itself (a flat folder). Masks are
class-index PNGs, or colour PNGs with a ``palette`` (one RGB colour per class); ``mask_map``
renames raw values (``{255: 1}`` for 0/255 masks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seglab.data.datasets.base import SegDataset, register_dataset
from seglab.data.datasets.imageio import duplicate_stem_message, open_image

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def list_images(folder: Path) -> dict[str, Path]:
    """``{stem: path}`` of the image files in a folder; two files of one stem are refused."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_EXTS or p.name.startswith("."):
            continue
        if p.stem in out:
            raise ValueError(duplicate_stem_message(out[p.stem], p))
        out[p.stem] = p
    return out


def read_image(path: Path, channels: int | None) -> np.ndarray:
    """Reads an image as HxWxC; converts greyscale<->RGB only by the explicit ``channels`` rule.

    16-bit images keep their range (scaled to [0, 1] later). A greyscale file for a 3-channel
    model is replicated to RGB; an RGB file for a 1-channel model is converted to luminance.
    """
    try:
        with open_image(path, "Image") as im:  # decoded, EXIF orientation applied
            if im.mode in ("I;16", "I;16B", "I;16L"):
                arr = np.asarray(im).astype(np.uint16)
            elif im.mode == "I":
                arr = np.asarray(im)
                if arr.min() < 0 or arr.max() > 65535:
                    raise ValueError(
                        f"{path} is a 32-bit integer image with values {arr.min()}..{arr.max()}, "
                        "outside 0..65535; rescale it to 8 or 16 bits (or float TIFF) first."
                    )
                arr = arr.astype(np.uint16)
            elif im.mode == "F":
                arr = np.asarray(im, dtype=np.float32)
            elif im.mode in ("L", "RGB"):
                arr = np.asarray(im)
            elif im.mode == "P" or im.mode == "RGBA" or im.mode == "LA":
                arr = np.asarray(im.convert("RGB"))
            else:
                arr = np.asarray(im.convert("RGB"))
    except ValueError:
        raise
    except FileNotFoundError:
        raise FileNotFoundError(
            f"Image {path} is gone: it was listed when the data set was opened. Restore it, "
            "or open the data set again."
        ) from None
    except (OSError, SyntaxError) as err:
        raise ValueError(
            f"Cannot read image {path}: {err}. The file is corrupt or truncated; re-export or "
            "remove it."
        ) from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if channels is not None and arr.shape[2] != channels:
        if channels == 3 and arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        elif channels == 1 and arr.shape[2] == 3:
            weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
            arr = (arr.astype(np.float32) @ weights).round().astype(arr.dtype)[:, :, None]
        else:
            raise ValueError(
                f"{path} has {arr.shape[2]} channels but the model expects {channels}; set "
                "model.in_channels (and data.channels) to match the images."
            )
    return arr


def read_mask(
    path: Path, palette: list[list[int]] | None, mask_map: dict[int, int] | None
) -> np.ndarray:
    """Reads a mask as HxW int64 class indices (palette colours or raw values, remapped)."""
    try:
        with open_image(path, "Mask", mask=True) as im:  # lossless only, EXIF as the image
            if palette is not None:
                rgb = np.asarray(im.convert("RGB")).astype(np.int64)
                code = rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]
                lut = {c[0] * 65536 + c[1] * 256 + c[2]: i for i, c in enumerate(palette)}
                out = np.full(code.shape, -1, np.int64)
                for k, v in lut.items():
                    out[code == k] = v
                if (out < 0).any():
                    bad = {
                        tuple(int(x) for x in rgb[out < 0][j])
                        for j in range(min(5, int((out < 0).sum())))
                    }
                    raise ValueError(
                        f"Mask {path} has colours {sorted(bad)} that are not in data.palette; "
                        "add them to the palette (or map them to the ignore index)."
                    )
                return out
            if im.mode not in ("L", "P", "I", "I;16", "1"):
                raise ValueError(
                    f"Mask {path} is {im.mode}; class-index masks must be single-channel PNGs. "
                    "For colour masks give data.dataset_kwargs.palette."
                )
            arr = np.asarray(im).astype(np.int64)
    except OSError as err:
        raise ValueError(f"Cannot read mask {path}: {err}. Re-export or remove it.") from None
    if mask_map:
        out = arr.copy()
        for src, dst in mask_map.items():
            out[arr == int(src)] = int(dst)
        arr = out
    return arr


def _pair_folders(root: Path, split: str) -> tuple[Path, Path, bool]:
    """Image and mask folders for a split, and whether the split must be carved out of them."""
    if not root.is_dir():
        raise FileNotFoundError(
            f"Data root {root} does not exist. Point data.root at a folder holding images/ and "
            "masks/ (or train/images, train/masks, val/...)."
        )
    if split == "predict":  # images/ if present, else the folder itself (a flat folder)
        folder = root / "images" if (root / "images").is_dir() else root
        return folder, root / "masks", False
    has_val = (root / "val" / "images").is_dir()
    if (root / split / "images").is_dir():
        # train/ without val/: validation is carved out of train/, so train must be too.
        carve = split == "train" and not has_val
        return root / split / "images", root / split / "masks", carve
    if (root / "images").is_dir():
        return root / "images", root / "masks", split in ("train", "val")
    if split == "val" and (root / "train" / "images").is_dir():
        return root / "train" / "images", root / "train" / "masks", True
    raise FileNotFoundError(
        f"No images/ folder under {root} or {root / split}. Expected {root}/images + "
        f"{root}/masks, or {root}/{split}/images + {root}/{split}/masks."
    )


@register_dataset("folder")
class FolderDataset(SegDataset):
    """Images and masks matched by file stem.

    Args:
        root: Data root (see the module docstring for accepted layouts).
        split: ``train``, ``val``, ``test`` or ``predict`` (images only).
        num_classes: Classes in the masks, checked by ``seglab check-data``.
        class_names: Optional class names.
        ignore_index: Mask value to ignore, or None.
        palette: RGB colour per class for colour masks.
        mask_map: Raw mask value -> class index (e.g. ``{255: 1}``).
        channels: Image channels the model expects (greyscale <-> RGB converted by rule).
        val_fraction: Share of images held out for ``val`` when there is no val folder.
        seed: Seed of that split.
        **kwargs: ``transform``, ``mean``, ``std``.
    """

    def __init__(
        self,
        root: str,
        split: str = "train",
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        ignore_index: int | None = None,
        palette: list[list[int]] | None = None,
        mask_map: dict[int, int] | None = None,
        channels: int | None = 3,
        val_fraction: float = 0.2,
        seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.root, self.split = Path(root), split
        self.num_classes, self.class_names, self.ignore_index = (
            num_classes,
            class_names,
            ignore_index,
        )
        self.palette, self.mask_map, self.channels = palette, mask_map, channels
        img_dir, mask_dir, carve = _pair_folders(self.root, split)
        images = list_images(img_dir)
        if not images:
            raise FileNotFoundError(f"{img_dir} holds no images ({', '.join(IMAGE_EXTS)}).")
        self.masks: dict[str, Path] = {}
        if split != "predict":
            if not mask_dir.is_dir():
                raise FileNotFoundError(
                    f"Mask folder {mask_dir} is missing (expected beside {img_dir})."
                )
            self.masks = list_images(mask_dir)
            lonely = sorted(set(images) - set(self.masks))
            orphans = sorted(set(self.masks) - set(images))
            if lonely or orphans:
                raise FileNotFoundError(
                    f"Images and masks do not pair up by file stem in {img_dir.parent}: images "
                    f"without mask {lonely[:5]}, masks without image {orphans[:5]}. Add or "
                    "remove files so every image has a mask of the same stem."
                )
        stems = sorted(images)
        if carve and split in ("train", "val"):
            order = np.random.default_rng(seed).permutation(len(stems))
            n_val = max(1 if val_fraction > 0 else 0, round(val_fraction * len(stems)))
            chosen = order[:n_val] if split == "val" else order[n_val:]
            stems = [stems[i] for i in sorted(chosen)]
        self.stems, self.images = stems, images

    def __len__(self) -> int:
        return len(self.stems)

    def load(self, index: int) -> dict:
        stem = self.stems[index]
        image = read_image(self.images[stem], self.channels)
        sample = {"image": image, "name": stem}
        if self.masks:
            mask = read_mask(self.masks[stem], self.palette, self.mask_map)
            if mask.shape != image.shape[:2]:
                raise ValueError(
                    f"Image {self.images[stem]} is {image.shape[:2]} but mask "
                    f"{self.masks[stem]} is {mask.shape}; they must have the same size."
                )
            sample["mask"] = mask
        return sample
