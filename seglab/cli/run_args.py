"""The ``run.*`` options of every ``seglab`` LightningCLI subcommand, declared once.

``SeglabCLI.add_arguments_to_parser`` and the config-key checker both read this declaration,
so a new option is known to both without a second list.
"""

from __future__ import annotations

from typing import Any


def add_run_arguments(parser: Any) -> None:
    """Adds the ``--run.*`` options to ``parser`` (anything with ``add_argument``)."""
    parser.add_argument(
        "--run.experiment",
        type=str | None,
        default=None,
        help="Run name (default: config file stem).",
    )
    parser.add_argument("--run.root", type=str, default="runs", help="Folder that holds all runs.")
    parser.add_argument(
        "--run.monitor", type=str, default="val/mIoU", help="Metric for the best checkpoint."
    )
    parser.add_argument("--run.mode", type=str, default="max", help="max or min for run.monitor.")
    parser.add_argument(
        "--run.num_overlays", type=int, default=4, help="Validation overlays drawn."
    )
    parser.add_argument(
        "--run.wandb", type=bool, default=False, help="Also log to Weights & Biases."
    )
    parser.add_argument("--run.wandb_project", type=str, default="seglab", help="W&B project.")
    parser.add_argument(
        "--run.wandb_log_model",
        type=bool | str,
        default=False,
        help="Upload checkpoints to W&B as artifacts: true (at the end) or 'all' (each save).",
    )
    parser.add_argument("--run.wandb_entity", type=str | None, default=None, help="W&B entity.")
    parser.add_argument(
        "--run.finetune",
        type=bool,
        default=False,
        help="fit --ckpt_path CK: load only CK's weights and start a new fit (new run folder, "
        "optimiser, schedule and loss from the config; epoch 0) instead of resuming it.",
    )
