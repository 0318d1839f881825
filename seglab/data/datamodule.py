"""``SegDataModule``: one LightningDataModule for every data set."""

from __future__ import annotations

import logging
import multiprocessing
import os
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler, WeightedRandomSampler

from seglab.data.datasets.base import SegDataset, get_dataset_class
from seglab.data.transforms import build_transforms, seed_transform

log = logging.getLogger(__name__)


def _worker_init(_: int) -> None:
    try:
        import cv2

        cv2.setNumThreads(0)  # OpenCV threads inside loader workers oversubscribe the CPU
    except ImportError:  # pragma: no cover
        pass
    torch.set_num_threads(1)
    info = torch.utils.data.get_worker_info()
    transform = getattr(info.dataset, "transform", None) if info else None
    if transform is not None:  # albumentations' Compose has its own RNG: seed it per worker
        seed_transform(transform, torch.initial_seed() % 2**32)


def start_method() -> str:
    """The start method loader workers will use (the platform's default unless one was set)."""
    chosen = multiprocessing.get_start_method(allow_none=True)
    return chosen or multiprocessing.get_all_start_methods()[0]  # the first is the default


class SeededEpochSampler(Sampler):
    """Training order and augmentation as a pure function of ``(seed, epoch)``.

    Lightning calls ``set_epoch`` before every epoch. Each item is yielded as
    ``(augmentation_seed, index)``; :class:`SegDataset` reseeds the albumentations pipeline with
    it. Nothing depends on the global RNG state or on how long loader workers have lived, so a run
    resumed from ``last.ckpt`` replays exactly the batches of an uninterrupted run.

    Args:
        n: Dataset length.
        seed: Base seed (the ``seed_everything`` value).
        weights: Per-item sampling weights (sampling with replacement); None shuffles.
    """

    def __init__(self, n: int, seed: int, weights: torch.Tensor | None = None) -> None:
        self.n, self.seed, self.weights, self.epoch = n, int(seed), weights, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is None:
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        seeds = torch.randint(0, 2**32 - 1, (self.n,), generator=g, dtype=torch.int64)
        yield from zip(seeds.tolist(), order.tolist())


class SegDataModule(L.LightningDataModule):
    """Data for every seglab experiment.

    Args:
        dataset: Reader name (``synthetic``, ``folder``, ``voc``, ``cityscapes``, ``camvid``,
            ``ade20k``, ``ct_slices``, ...).
        root: Data root; None for readers that need none (``synthetic``, ``ct_slices`` falls
            back to the CT phantom).
        dataset_kwargs: Extra reader arguments (``num_classes``, ``palette``, ``size``, ...).
        train_split: Split name for training.
        val_split: Split name for validation.
        test_split: Split name for testing (None: the validation split).
        predict_root: Folder of images for ``seglab predict``.
        batch_size: Training batch size.
        val_batch_size: Evaluation batch size (default: ``batch_size``).
        num_workers: Loader workers; None picks ``min(4, cpus - 1)``.
        train_transforms: Albumentations list for training (see ``seglab.data.transforms``).
        val_transforms: Albumentations list for evaluation.
        mean: Per-channel mean after scaling to [0, 1]; None: the pretrained encoder's
            (timm ``pretrained_cfg``) when it has weights, else no normalisation.
        std: Per-channel standard deviation.
        drop_last: Drop the last incomplete training batch (a batch of 1 breaks BatchNorm).
        weight_map: ``{w0, sigma}`` to add the U-Net weight map as ``batch["weight"]``.
        foreground_sampling: Sample training items with the reader's ``sample_weights()``.
        cache: Keep the decoded training and validation items in memory, read once at setup
            (before augmentation, which stays random per step): True caches every item, a
            number caps each split's cache at that many GiB; False reads the files every time.
            Small data sets (medical, EM) then stop paying the file decode every step.
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str | None = None,
        dataset_kwargs: dict[str, Any] | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        predict_root: str | None = None,
        batch_size: int = 8,
        val_batch_size: int | None = None,
        num_workers: int | None = None,
        train_transforms: list[dict[str, Any]] | None = None,
        val_transforms: list[dict[str, Any]] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        drop_last: bool = True,
        weight_map: dict[str, float] | None = None,
        foreground_sampling: bool = False,
        cache: bool | float = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.reader = get_dataset_class(dataset)
        self.train_tf = build_transforms(train_transforms)
        self.val_tf = build_transforms(val_transforms)
        if num_workers is None:
            num_workers = max(0, min(4, (os.cpu_count() or 1) - 1))
        self.num_workers = num_workers
        if not isinstance(cache, bool) and not (isinstance(cache, (int, float)) and cache > 0):
            raise ValueError(
                f"data.cache={cache!r}: use true (cache every item), false, or a positive "
                "number of GiB per split."
            )
        self.datasets: dict[str, Any] = {}

    def _cache(self, split: str, ds: SegDataset) -> None:
        """Fills ``ds``'s in-memory cache when ``cache`` asks for it, and logs its size."""
        cache = self.hparams.cache
        if cache is False:
            return
        if not hasattr(ds, "fill_cache"):
            raise TypeError(
                f"data.cache needs a reader derived from SegDataset; {type(ds).__name__} is "
                "not. Derive it from seglab.data.datasets.base.SegDataset or set data.cache: false."
            )
        cap = None if cache is True else float(cache) * 2**30
        n, used = ds.fill_cache(cap)
        log.info("Cached %d of %d %s items in memory (%.1f MiB)", n, len(ds), split, used / 2**20)
        method = start_method()
        if self.num_workers > 0 and method != "fork":
            log.warning(
                "data.cache with %d loader workers started by %r: each worker holds its own "
                "copy of the %s cache (%.1f MiB each, %.1f MiB with the main process's); under "
                "'fork' (Linux) they share it. Set data.num_workers=0 if memory is short.",
                self.num_workers, method, split, used / 2**20,
                (self.num_workers + 1) * used / 2**20,
            )  # fmt: skip

    def make_dataset(self, split: str, train: bool = False, root: str | None = None) -> SegDataset:
        """Builds the reader for one split with the matching transforms."""
        h = self.hparams
        kwargs = dict(h.dataset_kwargs or {})
        mean, std = self.normalisation()
        if mean is not None:
            kwargs |= {"mean": mean, "std": std}
        ds = self.reader(
            root=root or h.root,
            split=split,
            transform=self.train_tf if train else self.val_tf,
            **kwargs,
        )
        if len(ds) == 0:
            raise ValueError(
                f"Split {split!r} of dataset {h.dataset!r} at {root or h.root} is empty."
            )
        return ds

    def normalisation(self) -> tuple[list[float] | None, list[float] | None]:
        """The experiment's mean/std, else a pretrained encoder's; a mismatch is logged once."""
        h = self.hparams
        module = getattr(getattr(self, "trainer", None), "lightning_module", None)
        encoder = getattr(getattr(module, "model", None), "encoder", None)
        norm = getattr(encoder, "pretrained_norm", None)
        if norm is not None and not getattr(self, "_norm_logged", False):
            self._norm_logged = True
            if h.mean is None:
                log.warning("Normalisation follows the encoder's weights: mean %s, std %s", *norm)
            elif [list(map(float, v)) for v in (h.mean, h.std)] != [list(v) for v in norm]:
                log.warning(
                    "data.mean/std %s/%s differ from the encoder weights' %s/%s; the "
                    "experiment's are used (drop them to follow the weights).",
                    h.mean, h.std, *norm,
                )  # fmt: skip
        return (h.mean, h.std) if h.mean is not None or norm is None else norm

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if stage in (None, "fit") and "train" not in self.datasets:
            train = self.make_dataset(h.train_split, train=True)
            train.weight_map = h.weight_map
            self._cache("train", train)
            self.datasets["train"] = train
            train[0]  # read one sample here, so a bad file fails now and not inside a worker
        if stage in (None, "fit", "validate") and "val" not in self.datasets:
            self.datasets["val"] = self.make_dataset(h.val_split)
            self._cache("val", self.datasets["val"])
            self.datasets["val"][0]
        if stage in (None, "test") and "test" not in self.datasets:
            self.datasets["test"] = self.make_dataset(h.test_split or h.val_split)
        for tf in (self.train_tf, self.val_tf):  # reproducible augmentation with num_workers=0
            if tf is not None:
                seed_transform(tf, torch.initial_seed() % 2**32)
        if stage == "predict" and "predict" not in self.datasets:
            self.datasets["predict"] = self.make_dataset("predict", root=h.predict_root or h.root)

    @property
    def info(self) -> dict[str, Any]:
        """``num_classes``, ``ignore_index`` and ``class_names`` of the data, where known."""
        ds = next(iter(self.datasets.values()), None)
        ds = getattr(ds, "dataset", ds)
        return {k: getattr(ds, k, None) for k in ("num_classes", "ignore_index", "class_names")}

    def _loader(self, split: str, shuffle: bool, batch_size: int, drop_last: bool) -> DataLoader:
        ds = self.datasets[split]
        sampler = None
        if split == "train":
            weights = None
            if self.hparams.foreground_sampling:
                base = getattr(ds, "dataset", ds)
                weights = torch.as_tensor(base.sample_weights(), dtype=torch.double)
            trainer = getattr(self, "trainer", None)
            if trainer is not None and trainer.world_size > 1:
                # DDP: Lightning wraps the sampler and never calls the inner set_epoch
                if weights is not None:
                    sampler = WeightedRandomSampler(weights, len(ds), replacement=True)
                    shuffle = False
            else:
                seed = os.environ.get("PL_GLOBAL_SEED")  # set by seed_everything
                seed = int(seed) if seed is not None else int(torch.randint(2**31, ()).item())
                sampler, shuffle = SeededEpochSampler(len(ds), seed, weights), False
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=drop_last,
            worker_init_fn=_worker_init,
        )

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        n = len(self.datasets["train"])
        if h.drop_last and n < h.batch_size:
            raise ValueError(
                f"data.batch_size={h.batch_size} is larger than the training split ({n} "
                "items): with data.drop_last: true (the default, so that BatchNorm never trains "
                "on a batch of 1) no batch is left. Lower data.batch_size or add data."
            )
        return self._loader("train", True, h.batch_size, h.drop_last)

    def val_dataloader(self) -> DataLoader:
        h = self.hparams
        return self._loader("val", False, h.val_batch_size or h.batch_size, False)

    def test_dataloader(self) -> DataLoader:
        h = self.hparams
        return self._loader("test", False, h.val_batch_size or h.batch_size, False)

    def predict_dataloader(self) -> DataLoader:
        h = self.hparams
        return self._loader("predict", False, h.val_batch_size or h.batch_size, False)
