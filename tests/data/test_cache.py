"""``data.cache``: decoded items kept in memory, equal to reading the files, safe to augment."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from seglab.data.datamodule import SegDataModule
from seglab.data.datasets.base import get_dataset_class

Folder = get_dataset_class("folder")
FLIPS = [{"name": "HorizontalFlip", "p": 1.0}]


def module(root, cache, transforms=None) -> SegDataModule:
    return SegDataModule(
        dataset="folder",
        root=str(root),
        dataset_kwargs={"val_fraction": 0.5},
        batch_size=2,
        num_workers=0,
        train_transforms=transforms,
        cache=cache,
    )


def test_cached_items_equal_the_files_and_the_files_are_not_read_again(folder_data):
    plain, cached = module(folder_data, False), module(folder_data, True)
    plain.setup("fit")
    cached.setup("fit")
    ds = cached.datasets["train"]
    assert len(ds._memory) == len(ds) > 0
    want = {
        s: [plain.datasets[s][i] for i in range(len(plain.datasets[s]))] for s in ("train", "val")
    }
    shutil.rmtree(folder_data / "images")  # every later read must come from memory
    for split, items in want.items():
        for i, a in enumerate(items):
            b = cached.datasets[split][i]
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    with pytest.raises(FileNotFoundError, match="is gone"):
        plain.datasets["train"].load(0)


def test_the_cache_keeps_labels_in_the_smallest_type_that_holds_them(folder_data):
    ds = Folder(folder_data, "train", val_fraction=0.5)
    raw = ds.load(0)["mask"]
    ds.fill_cache()
    kept = ds._memory[0]["mask"]
    assert raw.dtype == np.int64 and kept.dtype == np.uint8 and np.array_equal(kept, raw)
    assert ds[0]["mask"].dtype == torch.int64


def test_a_transform_cannot_change_the_cache(folder_data):
    dm = module(folder_data, True, FLIPS)
    dm.setup("fit")
    ds = dm.datasets["train"]
    before = ds._memory[0]["image"].copy()
    sample = ds._read(0)
    sample["image"][:] = 0  # a transform writing into its input
    first, second = ds[0], ds[0]
    assert np.array_equal(ds._memory[0]["image"], before)
    assert torch.equal(first["image"], second["image"])
    unflipped = Folder(folder_data, "train", val_fraction=0.5)[0]["image"]
    assert torch.equal(first["image"], unflipped.flip(-1))


def test_the_cap_stops_the_cache(folder_data):
    ds = Folder(folder_data, "train", val_fraction=0.5)
    raw = ds.load(0)
    one = raw["image"].nbytes + raw["mask"].size  # the cache keeps these labels as uint8
    assert ds.fill_cache(one * 1.5) == (1, one)
    assert ds.fill_cache() == (len(ds), one * len(ds))
    gib = one * 2.5 / 2**30
    dm = module(folder_data, gib)
    dm.setup("fit")
    assert len(dm.datasets["train"]._memory) == 2


@pytest.mark.parametrize("bad", [0, -1.0, "yes"])
def test_a_bad_cache_value_is_refused(folder_data, bad):
    with pytest.raises(ValueError, match="data.cache"):
        module(folder_data, bad)


def test_a_reader_with_its_own_memo_caches_too():
    kw = dict(dataset="synthetic", dataset_kwargs={"size": 32, "num_samples": 4}, num_workers=0)
    plain, cached = SegDataModule(**kw), SegDataModule(**kw, cache=True)
    plain.setup("fit")
    cached.setup("fit")
    assert len(cached.datasets["train"]._memory) == 4
    for i in range(4):
        a, b = plain.datasets["train"][i], cached.datasets["train"][i]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])


@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_a_cache_copied_into_each_worker_is_said_with_its_size(
    tmp_path, monkeypatch, caplog, method
):
    import seglab.data.datamodule as datamodule
    from tests.conftest import write_folder_dataset

    folder_data = write_folder_dataset(tmp_path / "big", n=4, size=(500, 600))  # 1.1 MiB each
    monkeypatch.setattr(datamodule, "start_method", lambda: method)
    train_bytes = Folder(folder_data, "train", val_fraction=0.5).fill_cache()[1]

    def said(workers: int) -> list[str]:
        caplog.clear()
        dm = SegDataModule(
            dataset="folder", root=str(folder_data), dataset_kwargs={"val_fraction": 0.5},
            batch_size=2, num_workers=workers, cache=True,
        )  # fmt: skip
        with caplog.at_level("WARNING", logger="seglab.data.datamodule"):
            dm.setup("fit")
        return [r.getMessage() for r in caplog.records if "own copy" in r.getMessage()]

    assert said(0) == []
    if method == "fork":
        assert said(2) == []
        return
    warnings = said(2)
    assert len(warnings) == 2  # the training and the validation cache
    train = next(m for m in warnings if "copy of the train cache" in m)
    mib = train_bytes / 2**20
    assert mib > 2  # two 500x600 items
    assert f"2 loader workers started by {method!r}" in train
    assert f"({mib:.1f} MiB each, {3 * mib:.1f} MiB with the main process's)" in train
