"""CT volumes as 2D / 2.5D axial slices: the patient-level split and the ``ct_slices`` dataset.

Volumes are read once into the preprocessing cache (:mod:`seglab.data.ct.cache`: HU window,
in-plane resize, memory-mapped ``.npy``), so later epochs open no NIfTI.

Splits are by patient (case), never by slice: see :func:`split_cases`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seglab.data.ct.cache import default_cache_dir, preprocess_case
from seglab.data.ct.volumes import Case, _natural_key, find_cases
from seglab.data.datasets.base import SegDataset, register_dataset

SPLITS = ("train", "val", "test", "all", "predict")
LABEL_MODES = {
    "liver": ["background", "liver"],
    "liver_tumor": ["background", "liver", "tumor"],
}


def split_cases(
    case_ids: Sequence[str],
    val_fraction: float = 0.2,
    val_cases: Sequence[str] | None = None,
    test_fraction: float = 0.0,
    test_cases: Sequence[str] | None = None,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Patient-level split: every case lands in exactly one of train / val / test.

    Explicit ``val_cases`` / ``test_cases`` win over the fractions. The remaining cases are
    shuffled with ``seed`` (sorted first, so the result depends only on the set of ids and the
    seed) and the first ``round(fraction * n)`` go to test, the next to val (at least one each
    when the fraction is > 0 and enough cases exist; train keeps at least one). Adding cases
    reshuffles: pin ``val_cases`` for a split that must stay fixed.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each in natural id order.
    """
    ids = sorted(set(case_ids), key=_natural_key)
    known = set(ids)
    for name, given in (("val_cases", val_cases), ("test_cases", test_cases)):
        bad = [c for c in given or [] if c not in known]
        if bad:
            raise ValueError(
                f"{name} names unknown case(s) {bad}; known ids look like {ids[:3]} "
                f"({len(ids)} cases)."
            )
    both = set(val_cases or []) & set(test_cases or [])
    if both:
        raise ValueError(f"Cases {sorted(both)} are in both val_cases and test_cases.")
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"{name} must lie in [0, 1), got {frac}.")
    n = len(ids)
    fixed = set(val_cases or []) | set(test_cases or [])
    rest = [c for c in ids if c not in fixed]
    rest = [rest[i] for i in np.random.default_rng(seed).permutation(len(rest))]

    def count(frac: float, given: Sequence[str] | None) -> int:
        if given is not None or frac <= 0:
            return 0
        return max(1, round(frac * n))

    n_test = min(count(test_fraction, test_cases), max(0, len(rest) - 1))
    n_val = min(count(val_fraction, val_cases), max(0, len(rest) - n_test - 1))
    out = {
        "test": list(test_cases or []) + rest[:n_test],
        "val": list(val_cases or []) + rest[n_test : n_test + n_val],
        "train": rest[n_test + n_val :],
    }
    return {k: sorted(v, key=_natural_key) for k, v in out.items()}


@register_dataset("ct_slices")
class CTSliceDataset(SegDataset):
    """Axial slices of CT volumes (LiTS 2017 / MSD Task03), 2D or 2.5D.

    Args:
        root: Data root (see :func:`seglab.data.ct.volumes.find_cases`); None generates and uses
            the synthetic CT phantom (:func:`seglab.data.ct.phantom.ensure_phantom`).
        split: ``train``, ``val``, ``test``, ``all`` or ``predict`` (all cases, labels optional).
        val_fraction: Share of cases (patients) for validation.
        val_cases: Explicit validation case ids (then ``val_fraction`` is ignored).
        test_fraction: Share of cases held out for testing (default none).
        test_cases: Explicit test case ids.
        seed: Seed of the case split and of the empty-slice subsampling.
        window: HU window ``(lo, hi)`` mapped to [0, 1].
        context: Slices per sample (odd): ``k`` neighbours ``[z-r .. z+r]`` as channels, the
            edge slice repeated at the volume ends. 1 is plain 2D.
        labels: ``liver`` (binary: liver and tumour are 1) or ``liver_tumor`` (0 / 1 / 2).
        empty_fraction: Share of the slices WITHOUT liver that the train split keeps (a
            deterministic per-case sample; None or 1 keeps all). Val/test/all keep every slice so
            volumes can be reassembled.
        foreground_fraction: Target share of liver slices drawn by a ``WeightedRandomSampler``
            over :meth:`sample_weights` (use ``data.foreground_sampling=true``); None: uniform.
        slice_size: Resize every slice to ``slice_size`` squared (image area/bilinear, label
            class-wise alike, see :mod:`seglab.data.ct.resample`);
            None keeps the native grid. Spacing in the metadata is scaled accordingly.
        cache_dir: Preprocessing cache; default ``$SEGLAB_CACHE/ct`` or ``~/.cache/seglab/ct``.
        cache_dtype: ``float16`` or ``float32`` for the cached windowed image.
        transform: Albumentations pipeline (see :class:`SegDataset`).
        mean: Per-channel mean (length ``context``) after windowing, or None.
        std: Per-channel standard deviation.

    Samples: image ``HxWxk`` float32 in [0, 1], mask ``HxW`` int64, name ``<case>_z0012``, and
    meta ``case_id``, ``z``, ``depth``, ``spacing`` ``(z, y, x)`` mm for volume reassembly.
    """

    ignore_index = None

    def __init__(
        self,
        root: str | None = None,
        split: str = "train",
        val_fraction: float = 0.2,
        val_cases: list[str] | None = None,
        test_fraction: float = 0.0,
        test_cases: list[str] | None = None,
        seed: int = 0,
        window: tuple[float, float] = (-200.0, 250.0),
        context: int = 1,
        labels: str = "liver",
        empty_fraction: float | None = None,
        foreground_fraction: float | None = None,
        slice_size: int | None = None,
        cache_dir: str | None = None,
        cache_dtype: str = "float16",
        transform: Callable[..., dict[str, Any]] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        super().__init__(transform=transform, mean=mean, std=std)
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
        if labels not in LABEL_MODES:
            raise ValueError(f"labels must be one of {list(LABEL_MODES)}, got {labels!r}.")
        if context < 1 or context % 2 == 0:
            raise ValueError(f"context must be a positive odd number of slices, got {context}.")
        if empty_fraction is not None and not 0.0 <= empty_fraction <= 1.0:
            raise ValueError(f"empty_fraction must lie in [0, 1], got {empty_fraction}.")
        if foreground_fraction is not None and not 0.0 <= foreground_fraction <= 1.0:
            raise ValueError(f"foreground_fraction must lie in [0, 1], got {foreground_fraction}.")
        if cache_dtype not in ("float16", "float32"):
            raise ValueError(f"cache_dtype must be float16 or float32, got {cache_dtype!r}.")
        if root is None:
            from seglab.data.ct.phantom import ensure_phantom

            root = str(ensure_phantom())
        self.root = Path(root)
        self.split = split
        self.labels = labels
        self.class_names = list(LABEL_MODES[labels])
        self.num_classes = len(self.class_names)
        self.context = context
        self.window = (float(window[0]), float(window[1]))
        self.foreground_fraction = foreground_fraction
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir("ct")

        all_cases = find_cases(self.root, require_labels=split != "predict")
        if split in ("all", "predict"):
            cases = all_cases
        else:
            parts = split_cases(
                [c.case_id for c in all_cases],
                val_fraction,
                val_cases,
                test_fraction,
                test_cases,
                seed,
            )
            chosen = set(parts[split])
            cases = [c for c in all_cases if c.case_id in chosen]
            if not cases:
                raise ValueError(
                    f"Split {split!r} holds no case of the {len(all_cases)} under {self.root}: "
                    + (
                        "set test_fraction or test_cases (or evaluate on split='val')."
                        if split == "test"
                        else "lower val_fraction / test_fraction or add cases."
                    )
                )
        self.cases: list[Case] = cases
        self.metas: list[dict[str, Any]] = []
        self._files: list[tuple[Path, Path | None]] = []
        for case in cases:
            meta, img, lab = preprocess_case(
                case, self.cache_dir, self.window, slice_size, cache_dtype
            )
            if meta["max_label"] is not None and meta["max_label"] > 2:
                raise ValueError(
                    f"Label file {case.label_path} holds value {meta['max_label']}; LiTS labels "
                    "are 0 background, 1 liver, 2 tumour. Remap the file."
                )
            self.metas.append(meta)
            self._files.append((img, lab))

        case_idx, zs = [], []
        for ci, meta in enumerate(self.metas):
            z = np.arange(meta["depth"])
            if split == "train" and empty_fraction is not None and meta["fg"] is not None:
                fg = np.asarray(meta["fg"], bool)
                empty = z[~fg]
                keep = round(empty_fraction * len(empty))
                rng = np.random.default_rng([seed, zlib.crc32(meta["case_id"].encode())])
                kept = rng.choice(empty, size=keep, replace=False) if keep else empty[:0]
                z = np.sort(np.concatenate([z[fg], kept]))
            case_idx.append(np.full(len(z), ci, np.int64))
            zs.append(z.astype(np.int64))
        self._case = np.concatenate(case_idx) if case_idx else np.zeros(0, np.int64)
        self._z = np.concatenate(zs) if zs else np.zeros(0, np.int64)
        self._open: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = {}  # memmaps are reopened in each worker, never pickled as copies
        return state

    def __len__(self) -> int:
        return len(self._z)

    @property
    def case_ids(self) -> list[str]:
        """Ids of the cases in this split."""
        return [c.case_id for c in self.cases]

    def _arrays(self, ci: int) -> tuple[np.ndarray, np.ndarray | None]:
        if ci not in self._open:
            img, lab = self._files[ci]
            self._open[ci] = (
                np.load(img, mmap_mode="r"),
                None if lab is None else np.load(lab, mmap_mode="r"),
            )
        return self._open[ci]

    def has_liver(self) -> np.ndarray:
        """Per item: whether the slice holds liver (or tumour); False for unlabelled cases."""
        flat = np.concatenate(
            [np.asarray(m["fg"] or [0] * m["depth"], bool) for m in self.metas]
            or [np.zeros(0, bool)]
        )
        starts = np.cumsum([0] + [m["depth"] for m in self.metas])[:-1]
        return flat[starts[self._case] + self._z] if len(self) else np.zeros(0, bool)

    def sample_weights(self) -> np.ndarray:
        """Per-item weights for a ``WeightedRandomSampler`` (with replacement).

        With ``foreground_fraction=f`` liver slices share weight ``f`` and the others ``1 - f``,
        so about ``f`` of the drawn slices contain liver whatever the native ratio. Uniform
        weights when ``foreground_fraction`` is None or one of the two groups is empty.
        """
        n = len(self)
        f = self.foreground_fraction
        if f is None or n == 0:
            return np.ones(n, np.float64)
        fg = self.has_liver()
        n_fg = int(fg.sum())
        if n_fg in (0, n):
            return np.ones(n, np.float64)
        return np.where(fg, f / n_fg, (1.0 - f) / (n - n_fg)).astype(np.float64)

    def load(self, index: int) -> dict[str, Any]:
        ci, z = int(self._case[index]), int(self._z[index])
        meta = self.metas[ci]
        depth = meta["depth"]
        img, lab = self._arrays(ci)
        r = self.context // 2
        idx = np.clip(np.arange(z - r, z + r + 1), 0, depth - 1)
        image = np.ascontiguousarray(np.asarray(img[idx], dtype=np.float32).transpose(1, 2, 0))
        sample: dict[str, Any] = {"image": image}
        if lab is not None:
            m = np.asarray(lab[z])
            sample["mask"] = (m >= 1 if self.labels == "liver" else m).astype(np.int64)
        sample.update(
            name=f"{meta['case_id']}_z{z:04d}",
            case_id=meta["case_id"],
            z=z,
            depth=depth,
            spacing=tuple(float(s) for s in meta["spacing"]),
        )
        return sample
