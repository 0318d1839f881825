"""``seglab predict``: masks and overlays for a folder of images, from a checkpoint alone.

::

    seglab predict --ckpt_path runs/default/<time>/checkpoints/last.ckpt /data/new_images \\
        [--output DIR] [--tta '{flip: true}'] [--sliding_window '{window: [512, 512]}']

The checkpoint holds everything needed: the task's hyper-parameters rebuild the network, its
data settings (``datamodule_hyper_parameters``: normalisation ``mean`` / ``std``, the reader)
prepare the images, ``in_channels`` converts greyscale <-> RGB by rule and ``class_names``
label the legend. The input is a flat folder of images or a folder holding ``images/``
(``.png .jpg .tif .bmp``, any size, each run whole; batch 1 by default) or, for a CT
checkpoint (``ct_slices`` data), a folder of NIfTI volumes, written back as label volumes on
the input's grid. Written: ``masks/<stem>.png`` (class indices) and ``overlays/<stem>.png``
(image | prediction, with a legend) in ``<run>/predictions/<time>/`` of the checkpoint's run
folder, or in ``--output DIR``; the folder is printed.

``seglab predict --config ...`` runs the LightningCLI subcommand instead (trainer options from
the config); there too ``--data.predict_root`` is read by the folder reader and the same files
are written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from seglab.data.datamodule import SegDataModule
from seglab.data.io import load_checkpoint_file, safe_child
from seglab.models.inference import check_inference_options
from seglab.runs.checkpoint import load_task
from seglab.runs.folder import MaskWriter
from seglab.runs.pictures import overlay_picture
from seglab.runs.placement import discard_unstarted, invocation_dir

FILE_READERS = ("folder", "ct_slices")  # readers that read data.predict_root


class PredictionWriter(MaskWriter):
    """Index masks in ``<out>/masks/`` and coloured overlays in ``<out>/overlays/``."""

    def __init__(self, out_dir: str | Path, overlays: bool = True) -> None:
        super().__init__(Path(out_dir) / "masks")
        self.overlay_dir = Path(out_dir) / "overlays" if overlays else None
        self.count = 0

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ):
        super().write_on_batch_end(
            trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
        )
        names = batch["meta"]["name"]
        self.count += len(names)
        if self.overlay_dir is None:
            return
        self.overlay_dir.mkdir(parents=True, exist_ok=True)
        task = pl_module.hparams.task
        for image, pred, name in zip(batch["image"], prediction["pred"], names):
            stem = Path(str(name)).stem
            pic = overlay_picture(image, None, pred, pl_module.class_names, task, heading=stem)
            Image.fromarray(pic).save(safe_child(self.overlay_dir, f"{stem}.png"))


def prediction_writer(dataset: str, out_dir: str | Path) -> BasePredictionWriter:
    """The writer of a ``predict`` invocation: NIfTI volumes for CT, PNGs otherwise."""
    if dataset == "ct_slices":
        from seglab.inference.volume_writer import VolumeWriter

        return VolumeWriter(Path(out_dir) / "masks")
    return PredictionWriter(out_dir)


def redirect_predict_data(subcommand: str, cfg: Any) -> str | None:
    """``seglab predict --config ...``: a ``data.predict_root`` is read by the folder reader.

    A reader that ignores roots (``synthetic``) would otherwise predict its own images; its
    ``dataset_kwargs`` do not apply to a folder. Returns the predict root (None: unchanged).
    """
    if subcommand != "predict" or not cfg.data.get("predict_root"):
        return None
    if cfg.data.dataset not in FILE_READERS:
        model = cfg.model.init_args if hasattr(cfg.model, "init_args") else cfg.model
        cfg.data.dataset = "folder"
        cfg.data.dataset_kwargs = {"channels": int(model.in_channels)}
        cfg.data.val_transforms = None
        cfg.data.val_batch_size = 1
    return str(cfg.data.predict_root)


def is_lean_predict(argv: Sequence[str]) -> bool:
    """``seglab predict`` without ``--config``: the checkpoint-only form of this module."""
    if not argv or argv[0] != "predict":
        return False
    return not any(a in ("-c", "--config") or a.startswith("--config=") for a in argv)


def datamodule_for(
    ckpt: dict[str, Any], source: str, batch_size: int, num_workers: int
) -> SegDataModule:
    """The data module that reads ``source`` the way the checkpoint's training data was read."""
    data = dict(ckpt.get("datamodule_hyper_parameters") or {})
    hp = ckpt.get("hyper_parameters") or {}
    common = {
        "predict_root": str(source),
        "mean": data.get("mean"),
        "std": data.get("std"),
        "val_batch_size": batch_size,
        "num_workers": num_workers,
    }
    if data.get("dataset") == "ct_slices":
        return SegDataModule(
            dataset="ct_slices",
            dataset_kwargs=data.get("dataset_kwargs"),
            val_transforms=data.get("val_transforms"),
            **common,
        )
    if not data:
        print(
            "seglab predict: the checkpoint holds no data settings; images are scaled to [0, 1] "
            "without normalisation.",
            file=sys.stderr,
        )
    channels = int(hp.get("in_channels", 3))
    return SegDataModule(dataset="folder", dataset_kwargs={"channels": channels}, **common)


def _mapping(text: str | None, name: str) -> dict[str, Any] | None:
    if text is None:
        return None
    value = yaml.safe_load(text)
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"--{name} takes a mapping such as '{{flip: true}}', got {text!r}.")
    return value


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="seglab predict",
        description="Masks and overlays for a folder of images (or CT volumes), from a "
        "checkpoint alone. With --config: the LightningCLI subcommand (see seglab predict "
        "--config X --help).",
    )
    p.add_argument("input", nargs="?", help="Folder of images (flat or with images/), or NIfTI.")
    p.add_argument("--ckpt_path", "--ckpt", required=True, help="Checkpoint written by seglab.")
    p.add_argument("--data.predict_root", dest="predict_root", help="Same as the input folder.")
    p.add_argument("--output", help="Output folder (default: <run>/predictions/<time>/).")
    p.add_argument(
        "--tta", help="Test-time augmentation, e.g. '{scales: [0.75, 1, 1.25], flip: true}'."
    )
    p.add_argument(
        "--sliding_window", help="Tiled inference, e.g. '{window: [512, 512], overlap: 0.5}'."
    )
    p.add_argument("--batch_size", type=int, default=1, help="Images per batch (1: any sizes).")
    p.add_argument("--num_workers", type=int, default=0, help="Loader workers.")
    p.add_argument("--accelerator", default="auto", help="cpu, gpu, auto (Lightning's names).")
    p.add_argument("--no-overlays", action="store_true", help="Write the masks only.")
    args = p.parse_args(list(argv))
    if bool(args.input) == bool(args.predict_root):
        p.error("give the input folder once: as the positional DIR or as --data.predict_root.")
    return args


def predict(args: argparse.Namespace) -> Path:
    """Runs one prediction; returns the output folder."""
    from lightning.pytorch import Trainer

    source = Path(args.input or args.predict_root).expanduser()
    if not source.exists():
        raise FileNotFoundError(f"Input {source} does not exist; give a folder of images.")
    tta, sliding = _mapping(args.tta, "tta"), _mapping(args.sliding_window, "sliding_window")
    check_inference_options(tta, sliding)
    ckpt = load_checkpoint_file(args.ckpt_path)
    task = load_task(args.ckpt_path)
    if tta is not None:
        task.hparams["tta"] = tta
    if sliding is not None:
        task.hparams["sliding_window"] = sliding
    dm = datamodule_for(ckpt, source, args.batch_size, args.num_workers)
    out = invocation_dir("predict", args.ckpt_path, args.output)
    created = not args.output or not any(out.iterdir())
    writer = prediction_writer(dm.hparams.dataset, out)
    if isinstance(writer, PredictionWriter) and args.no_overlays:
        writer.overlay_dir = None
    trainer = Trainer(
        accelerator=args.accelerator,
        devices=1,
        logger=False,
        callbacks=[writer],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(out),
    )
    try:
        trainer.predict(task, datamodule=dm, return_predictions=False)
    except BaseException:
        discard_unstarted(out, created)
        raise
    what = (
        f"{len(getattr(writer, 'written', []))} label volume(s)"
        if not isinstance(writer, PredictionWriter)
        else f"{writer.count} mask(s)" + ("" if writer.overlay_dir is None else " and overlays")
    )
    print(f"seglab predict: {what} from {source} written to {out}", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> Path:
    """Entry point of ``seglab predict`` without ``--config``."""
    return predict(parse_args(sys.argv[1:] if argv is None else argv))
