"""The ``seglab`` command: LightningCLI subcommands plus seglab's own tools.

``seglab fit|validate|test|predict --config experiments/X.yaml [--key=value ...]`` (also
``python -m seglab``); ``seglab compare|export|check-data|models`` are dispatched to their
modules. Each LightningCLI run gets its folder ``runs/<experiment>/<timestamp>/``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from seglab.cli.ckpt_options import load_finetune_weights, parse_ckpt_path
from seglab.cli.config_base import expand_configs
from seglab.cli.config_check import check_cli_args
from seglab.cli.messages import friendly_error, print_rank_zero
from seglab.cli.run_args import add_run_arguments
from seglab.data.datamodule import SegDataModule
from seglab.inference.predict import is_lean_predict, redirect_predict_data
from seglab.runs.checkpoint import AtomicCheckpointIO, TopKCheckpoint
from seglab.runs.csv_logger import ResumableCSVLogger
from seglab.runs.folder import RunSummary, new_run_dir
from seglab.runs.guards import default_guards
from seglab.runs.ownership import RunLock, inherited_run_dir, is_rank_zero, remove_partial_writes
from seglab.runs.pictures import RunPictures
from seglab.runs.placement import discard_unstarted, invocation_dir
from seglab.runs.progress import ProgressLog, file_friendly_trainer, quiet_known_noise
from seglab.tasks.base import SegmentationTask, check_task

TOOLS = {
    "compare": "seglab.compare",
    "export": "seglab.inference.export",
    "check-data": "seglab.cli.check_data",
    "models": "seglab.models.cards",
    "sweep": "seglab.cli.sweep",
    "experiments": "seglab.cli.experiments",
}


def restore_nulls(*mappings: dict[str, Any] | None) -> None:
    """Turns the string ``"None"`` back into None in free-form option dicts, in place.

    jsonargparse parses a dotted ``--model.init_args.model_kwargs.weights=null`` inside a
    subclass's ``dict[str, Any]`` into the string ``"None"`` (the whole-dict form keeps None);
    no seglab option takes that string, and every one that takes None means it.
    """
    for mapping in mappings:
        for key, value in (mapping or {}).items():
            if value == "None":
                mapping[key] = None


class SeglabCLI(LightningCLI):
    """LightningCLI with seglab's run folder, checkpointing and summary."""

    output: str | None = None  # --output DIR of validate/test/predict (set by run_cli)
    run_dir: Path | None = None
    created_run_dir = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        argv = kwargs.get("args")
        self.argv = list(sys.argv[1:] if argv is None else argv)
        self.resumed: Path | None = None  # the run folder a fit continues in
        self.resume_step: int | None = None  # global step of the checkpoint a fit resumes
        self.finetune_state: dict[str, Any] | None = None
        self.lock: RunLock | None = None
        try:
            super().__init__(*args, **kwargs)
        finally:
            if self.lock is not None:
                self.lock.release()

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        add_run_arguments(parser)

    @staticmethod
    def name_experiment(cfg: Any) -> None:
        """``run.experiment`` defaults to the stem of the last config file (not a trainer one)."""
        run = cfg.run
        if not run.experiment:
            configs = [
                c for c in (cfg.get("config") or []) if Path(str(c)).parent.name != "trainer"
            ]
            run.experiment = Path(str(configs[-1])).stem if configs else "default"

    def _parse_ckpt_path(self) -> None:
        """Resolves ``fit --ckpt_path last``, reads the checkpoint once (one clear error for an
        empty or truncated file) and rebuilds the task options from it, with the command line's
        safe changes applied and the others refused (:mod:`seglab.cli.ckpt_options`)."""
        parse_ckpt_path(self)

    def after_instantiate_classes(self) -> None:
        super().after_instantiate_classes()
        if self.finetune_state is not None:
            load_finetune_weights(self.model, self.finetune_state, self.finetune_path)

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand]
        model_args = cfg.model.init_args if hasattr(cfg.model, "init_args") else cfg.model
        restore_nulls(model_args.get("model_kwargs"), cfg.data.get("dataset_kwargs"))
        check_task(model_args.task, model_args.num_classes)
        run = cfg.run
        self.name_experiment(cfg)
        resumed = self.resumed
        self.run_dir = invocation_dir(self.subcommand, cfg.get("ckpt_path"), self.output)
        if self.run_dir is None:
            self.created_run_dir = resumed is None and inherited_run_dir() is None
            self.run_dir = new_run_dir(run.root, run.experiment, resume=resumed)
            if self.subcommand == "fit" and is_rank_zero():  # one writer per run folder
                self.lock = RunLock(self.run_dir).acquire()
                remove_partial_writes(self.run_dir)
        else:
            self.created_run_dir = not self.output or not any(self.run_dir.iterdir())
        self.predict_input = redirect_predict_data(self.subcommand, cfg)
        print_rank_zero(f"seglab {self.subcommand}: run folder {self.run_dir}")

    def instantiate_classes(self) -> None:
        with self.discard_on_failure():
            super().instantiate_classes()

    def _run_subcommand(self, subcommand: str) -> None:
        with self.discard_on_failure():
            super()._run_subcommand(subcommand)
        print_rank_zero(f"seglab {subcommand}: finished; results in {self.run_dir}")

    @contextmanager
    def discard_on_failure(self) -> Iterator[None]:
        """Removes this invocation's folder if it fails before its first training step."""
        try:
            yield
        except BaseException:
            trainer = getattr(self, "trainer", None)
            step = trainer.global_step if trainer is not None else 0
            if discard_unstarted(self.run_dir, self.created_run_dir, step):
                print_rank_zero(f"seglab: removed {self.run_dir} (nothing ran)", sys.stderr)
            raise

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        run = self.config[self.subcommand].run
        loggers: list[Any] = [
            ResumableCSVLogger(
                save_dir=str(self.run_dir), name="", version="", resume_step=self.resume_step
            )
        ]
        extra: list[Any] = []
        if run.wandb:
            from seglab.runs.wandb_logging import make_wandb_logger

            wandb_logger, extra = make_wandb_logger(self.config[self.subcommand], self.run_dir)
            loggers.append(wandb_logger)
        callbacks = [
            TopKCheckpoint(
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
            RunSummary(self.run_dir, run.monitor, run.mode, run.num_overlays, run.experiment),
            RunPictures(self.run_dir, run.num_overlays),
            ProgressLog(),
            *default_guards(),  # task vs data before the first step; no NaN checkpoint
            *extra,  # after RunSummary: W&B media read the finished summary.json
        ]
        if self.subcommand == "fit":
            callbacks.append(LearningRateMonitor(logging_interval="step"))
        if self.subcommand == "predict":
            from seglab.inference.predict import prediction_writer

            data = self.config[self.subcommand].data
            callbacks.append(prediction_writer(data.dataset, self.run_dir))
        callbacks += file_friendly_trainer(
            self._get(self.config_init, "trainer", default={}), kwargs
        )
        user_callbacks = self._get(self.config_init, "trainer", default={}).get("callbacks") or []
        kwargs |= {
            "logger": loggers,
            "callbacks": [*user_callbacks, *callbacks],
            "default_root_dir": str(self.run_dir),
            "plugins": [AtomicCheckpointIO()],
        }
        return super().instantiate_trainer(**kwargs)


def run_cli(args: list[str] | None = None, output: str | None = None) -> SeglabCLI:
    """Runs LightningCLI on ``args`` (``sys.argv[1:]`` by default); ``base:`` keys expand.

    Args:
        args: The command line after ``seglab``.
        output: Folder for a ``validate`` / ``test`` / ``predict`` invocation (default: a
            sub-folder of the checkpoint's run folder).
    """
    quiet_known_noise()
    if args is None:
        sys.argv[1:] = expand_configs(sys.argv[1:])
    else:
        args = expand_configs(list(args))
    check_cli_args(sys.argv[1:] if args is None else args)
    cli_class = type("SeglabCLI", (SeglabCLI,), {"output": output}) if output else SeglabCLI
    return cli_class(
        SegmentationTask,
        SegDataModule,
        subclass_mode_model=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        auto_configure_optimizers=False,
    )


def pop_option(argv: list[str], name: str, flag: bool = False) -> tuple[list[str], Any]:
    """``argv`` without ``name`` (``--name VALUE``, ``--name=VALUE`` or a bare ``flag``), and
    its value (True for a present flag, None when absent)."""
    out, value, i = [], None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == name and flag:
            value = True
        elif arg == name and i + 1 < len(argv):
            value, i = argv[i + 1], i + 1
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
        else:
            out.append(arg)
        i += 1
    return out, value


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``seglab`` command; seglab's own errors end as one line (``--debug``
    keeps the traceback)."""
    from_sys = argv is None
    argv, debug = pop_option(list(sys.argv[1:] if argv is None else argv), "--debug", flag=True)
    output = None
    if argv and argv[0] in ("fit", "validate", "test", "predict"):
        argv, output = pop_option(argv, "--output")
    os.environ.setdefault("WANDB_MODE", "offline")
    if not argv or argv[0] in ("-h", "--help", "help"):
        from seglab.cli.experiments import print_help

        print_help()
        return
    try:
        if argv[0] in TOOLS or is_lean_predict(argv):
            import importlib

            quiet_known_noise()
            module = "seglab.inference.predict" if argv[0] == "predict" else TOOLS[argv[0]]
            importlib.import_module(module).main(
                argv[1:] + (["--output", output] if output else [])
            )
            return
        if from_sys:
            sys.argv[1:] = argv
        run_cli(None if from_sys else argv, output=output)
    except (Exception, KeyboardInterrupt) as err:
        message = friendly_error(err)
        if debug or message is None:
            raise
        print(f"seglab: error: {message}\n(--debug shows the traceback)", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
