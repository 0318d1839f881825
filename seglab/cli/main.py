"""The ``seglab`` command: LightningCLI subcommands plus seglab's own tools.

``seglab fit|validate|test|predict --config experiments/X.yaml [--key=value ...]`` (also
``python -m seglab``); ``seglab compare|export|check-data|models`` are dispatched to their
modules. Each LightningCLI run gets its folder ``runs/<experiment>/<timestamp>/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from seglab.cli.config_base import expand_configs
from seglab.cli.config_check import ConfigKeyError, check_cli_args
from seglab.cli.run_args import add_run_arguments
from seglab.data.datamodule import SegDataModule
from seglab.runs.checkpoint import AtomicCheckpointIO
from seglab.runs.csv_logger import ResumableCSVLogger
from seglab.runs.folder import MaskWriter, RunSummary, latest_run_with_last, new_run_dir
from seglab.runs.guards import default_guards
from seglab.tasks.base import SegmentationTask, check_task

TOOLS = {
    "compare": "seglab.compare",
    "export": "seglab.inference.export",
    "check-data": "seglab.cli.check_data",
    "models": "seglab.models.cards",
    "sweep": "seglab.cli.sweep",
}


class SeglabCLI(LightningCLI):
    """LightningCLI with seglab's run folder, checkpointing and summary."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        add_run_arguments(parser)

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand]
        model_args = cfg.model.init_args if hasattr(cfg.model, "init_args") else cfg.model
        check_task(model_args.task, model_args.num_classes)
        run = cfg.run
        if not run.experiment:
            configs = [
                c for c in (cfg.get("config") or []) if Path(str(c)).parent.name != "trainer"
            ]
            run.experiment = Path(str(configs[-1])).stem if configs else "default"
        resumed = None
        if self.subcommand == "fit" and cfg.get("ckpt_path") == "last":
            resumed = latest_run_with_last(run.root, run.experiment)
            if resumed is None:
                raise FileNotFoundError(
                    f"--ckpt_path last: no earlier run of {run.experiment!r} under {run.root}/ "
                    "holds checkpoints/last.ckpt; start without --ckpt_path."
                )
            cfg.ckpt_path = str(resumed / "checkpoints" / "last.ckpt")
            os.environ["SEGLAB_RUN_DIR"] = str(resumed)
        self.run_dir = new_run_dir(run.root, run.experiment)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        run = self.config[self.subcommand].run
        loggers: list[Any] = [ResumableCSVLogger(save_dir=str(self.run_dir), name="", version="")]
        extra: list[Any] = []
        if run.wandb:
            from seglab.runs.wandb_logging import make_wandb_logger

            wandb_logger, extra = make_wandb_logger(self.config[self.subcommand], self.run_dir)
            loggers.append(wandb_logger)
        callbacks = [
            ModelCheckpoint(
                dirpath=str(self.run_dir / "checkpoints"),
                filename="best-epoch={epoch:03d}",
                auto_insert_metric_name=False,
                monitor=run.monitor,
                mode=run.mode,
                save_top_k=1,
            ),
            ModelCheckpoint(  # last.ckpt, rewritten every epoch whatever the monitored score
                dirpath=str(self.run_dir / "checkpoints"),
                filename="last",
                monitor=None,
                save_top_k=1,
                enable_version_counter=False,
            ),
            RunSummary(self.run_dir, run.monitor, run.mode, run.num_overlays),
            *default_guards(),  # task vs data before the first step; no NaN checkpoint
            *extra,  # after RunSummary: W&B media read the finished summary.json
        ]
        if self.subcommand == "predict":
            out = self.run_dir / "predictions" / "masks"
            if self.config[self.subcommand].data.dataset == "ct_slices":
                from seglab.inference.volume_writer import VolumeWriter

                callbacks.append(VolumeWriter(out))
            else:
                callbacks.append(MaskWriter(out))
        user_callbacks = self._get(self.config_init, "trainer", default={}).get("callbacks") or []
        kwargs |= {
            "logger": loggers,
            "callbacks": [*user_callbacks, *callbacks],
            "default_root_dir": str(self.run_dir),
            "plugins": [AtomicCheckpointIO()],
        }
        return super().instantiate_trainer(**kwargs)


def run_cli(args: list[str] | None = None) -> SeglabCLI:
    """Runs LightningCLI on ``args`` (``sys.argv[1:]`` by default); ``base:`` keys expand."""
    if args is None:
        sys.argv[1:] = expand_configs(sys.argv[1:])
    else:
        args = expand_configs(list(args))
    check_cli_args(sys.argv[1:] if args is None else args)
    return SeglabCLI(
        SegmentationTask,
        SegDataModule,
        subclass_mode_model=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        auto_configure_optimizers=False,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``seglab`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    if argv and argv[0] in TOOLS:
        import importlib

        importlib.import_module(TOOLS[argv[0]]).main(argv[1:])
        return
    try:
        run_cli(None if argv == sys.argv[1:] else argv)
    except ConfigKeyError as err:
        raise SystemExit(f"seglab: error: {err}") from None


if __name__ == "__main__":
    main()
