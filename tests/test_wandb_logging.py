"""W&B logging offline: a short fit leaves its config, metrics and media in the offline run."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from seglab.cli import run_cli
from seglab.runs.wandb_logging import flatten, run_tags
from seglab.runs.wandb_media import confusion_stats
from tests.conftest import tiny_args

REPO = Path(__file__).resolve().parents[1]
TINY = tiny_args()


def wandb_records(path: Path):
    """The protobuf records of a ``run-*.wandb`` file (W&B's LevelDB-style log: a 7-byte file
    header, 32 KiB blocks, records ``crc u32 | length u16 | type u8 | data`` split into
    FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4 chunks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    buf = path.read_bytes()
    assert buf[:4] == b":W&B"
    i, block, parts = 7, 32768, b""
    while i + 7 <= len(buf):
        room = block - i % block
        if room < 7:
            i += room
            continue
        _crc, length, kind = struct.unpack("<IHB", buf[i : i + 7])
        data, i = buf[i + 7 : i + 7 + length], i + 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts + data if kind == 4 else data)
            yield record
            parts = b""
        elif kind in (2, 3):
            parts += data


def finished_records(path: Path, timeout: float = 30.0) -> list:
    """The records once the run's exit record is on disk: wandb-core writes the offline log
    asynchronously and may still be flushing it after ``run.finish()`` has returned."""
    deadline = time.time() + timeout
    while True:
        try:
            records = list(wandb_records(path))
        except Exception:  # a record half written
            records = []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.time() > deadline:
            return records
        time.sleep(0.2)


def test_run_tags_and_flat_config():
    cfg = {
        "seed_everything": 0,
        "model": {
            "init_args": {
                "model": "deeplabv3",
                "encoder_name": "resnet50",
                "model_kwargs": {"output_stride": 8},
                "loss": {"ce": 1.0, "dice": 0.5},
            }
        },
        "data": {"dataset": "voc"},
    }
    assert run_tags(cfg) == [
        "arch:deeplabv3",
        "encoder:resnet50",
        "data:voc",
        "os:8",
        "loss:ce+0.5dice",
        "seed:0",
    ]
    flat = flatten(cfg)
    assert flat["model.init_args.model_kwargs.output_stride"] == 8
    assert flat["model.init_args.loss.dice"] == 0.5


def test_confusion_stats():
    cm = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    s = confusion_stats(cm)
    assert s["iou"][0] == pytest.approx(8 / 11) and s["iou"][1] == pytest.approx(3 / 6)
    assert s["dice"][1] == pytest.approx(6 / 9)
    assert s["present"].tolist() == [True, True, False]
    assert s["support"].tolist() == [10, 4, 0]


def test_fit_logs_to_wandb_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cli = run_cli(
        [
            "fit",
            "--config",
            "experiments/default.yaml",
            f"--run.root={tmp_path / 'runs'}",
            "--run.experiment=wb",
            "--run.wandb=true",
            "--run.num_overlays=2",
            "--trainer.max_epochs=2",
            *TINY,
        ]
    )
    run = cli.run_dir
    assert (run / "metrics.csv").is_file() and (run / "summary.json").is_file()  # CSV beside it
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, list((run / "wandb").iterdir())
    wb = offline[0]
    records = finished_records(next(wb.glob("run-*.wandb")))
    kinds = {r.WhichOneof("record_type") for r in records}
    assert {"run", "config", "history"} <= kinds

    # Run: group per experiment, tags, the resolved config under the CLI's dotted keys.
    (meta,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert meta.run_group == "wb"
    assert {"arch:unet", "encoder:unet", "data:synthetic", "loss:ce+dice", "seed:0"} <= set(
        meta.tags
    )
    assert (run / "wandb_run_id").read_text() == meta.run_id
    config = {}
    for r in records:
        items = r.config.update if r.WhichOneof("record_type") == "config" else []
        if r.WhichOneof("record_type") == "run":
            items = r.run.config.update
        config |= {i.key: json.loads(i.value_json) for i in items if i.key}
    assert config["model.init_args.lr"] == 0.003
    assert config["model.init_args.model_kwargs.base_channels"] == 4
    assert config["trainer.max_epochs"] == 2
    assert config["run.experiment"] == "wb"

    # Metrics per epoch, with the media keys of the callback.
    history = [
        {i.key or "/".join(i.nested_key): i.value_json for i in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    val_rows = [h for h in history if "val/mIoU" in h]
    assert [json.loads(h["epoch"]) for h in val_rows] == [0, 1]
    summary = json.loads((run / "summary.json").read_text())
    assert json.loads(val_rows[-1]["val/mIoU"]) == pytest.approx(summary["final"]["val/mIoU"])
    assert any("train/loss" in h for h in history)
    keys = {k.split("/")[0] + "/" + k.split("/")[1] for h in history for k in h if "/" in k}
    for key in ("val/per_class", "val/confusion_matrix_table", "val/predictions"):
        assert key in keys, key

    # Media: predictions with masks, the confusion-matrix image, the per-class table.
    images = wb / "files" / "media" / "images"
    assert len(list(images.glob("val/predictions_*.png"))) == 2 * 2  # 2 images x 2 epochs
    assert list(images.glob("mask/val/predictions_*.mask.png"))
    assert list(images.glob("val/confusion_matrix_image_*.png"))
    (table,) = sorted((wb / "files" / "media" / "table").glob("val/per_class_*.table.json"))[-1:]
    rows = json.loads(table.read_text())
    assert rows["columns"] == ["class", "IoU", "Dice", "pixels"]
    assert "background" in [row[0] for row in rows["data"]]
    masks = [h["val/predictions/all_masks"] for h in history if "val/predictions/all_masks" in h]
    assert masks and "ground_truth" in masks[-1] and "predictions" in masks[-1]
    labels = json.dumps(config["_wandb"]["mask/class_labels"])  # class names of the masks
    assert all(name in labels for name in ("background", "disc", "ring"))
